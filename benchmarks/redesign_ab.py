"""The redesign's A/B (issue 17): this tree against the commit before it, side by side in one run.

    .venv/bin/python benchmarks/redesign_ab.py            # 9 rounds, 100 streams each way (~6 min)
    .venv/bin/python benchmarks/redesign_ab.py --quick    # 1 round, a few streams (both trees run)

A = the commit before the redesign (``--commit``, f7ac540), checked out with ``git worktree add
--detach`` into a temporary directory (removed at the end, on errors and Ctrl-C too); B = this
checkout. Both run on the same interpreter (this one, the project's ``.venv``), each with
``PYTHONPATH`` on its tree's ``core/src`` and ``integrations/django/src`` (and its own demo
project for Daphne), so only the library code differs; the clients (raw Phoenix v2 clients of
``django_relay.py``, in this process) are the same for both. Each tree gets its `modelriver dev`
and its demo under Daphne (``_relaybench.start_daphne_probed``), started once and warmed up, then
``--rounds`` rounds alternate the trees (A, B then B, A, ...), each process idle before a pass:

* **gateway frames/s**: N answers of T tokens generated flat out on the tree's gateway, then N
  clients straight to it (``_relaybench.direct_run``, as ``django_relay``'s *direct* run and
  ``gateway_streams`` count: channel frames received / first connect .. last final). The
  gateway's CPU per frame over the same window is shown beside it.
* **relay CPU per frame** and **added latency**: N streams through the tree's Daphne at
  ``--rate`` tokens/s (20; the first token 8 s after a start, so that all clients have joined;
  ``_relaybench.relay_hop``): Daphne's CPU time (user + system) from the moment every client
  has joined to the last final, over the frames its clients got meanwhile; a token's added
  latency is its arrival through Daphne minus at a direct "shadow" client on the same channel
  (p99 of a round's tokens; the method's floor from two direct clients).

Reported: each metric's median over the rounds for A and B, and the ratio B/A as the median of
the rounds' ratios (a round's A and B ran back to back: the machine's load, drifting between
rounds, cancels out of each), with their range and middle half as the noise. Goals: frames/s
B/A >= 0.95, relay CPU per frame and added p99 B/A <= 1.05. ``--json`` prints one JSON object as
the last line (``summary`` rows ``{metric, measured, goal, met}``); ``--check`` exits 1 when a
goal is missed; ``--profile DIR`` profiles both Daphnes (cProfile). A clone without the commit
(a shallow one) fails with a message saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _procs import ROOT, Server, free_port, tree_env
from _relaybench import direct_run, dr, percentiles, profile_top, relay_hop, start_daphne_probed, text_of

PACKAGES = ("core/src", "integrations/django/src")
BEFORE = "f7ac540"
"""The last commit before issue 17's redesign."""
GOAL_FRAMES, GOAL_COST = 0.95, 1.05


@dataclass(frozen=True)
class Sizes:
    rounds: int
    gateway_streams: int
    tokens: int
    relay_streams: int
    relay_tokens: int
    rate: float
    first_token_ms: int
    settle_s: float
    warm_up: bool


FULL = Sizes(rounds=9, gateway_streams=100, tokens=200, relay_streams=100, relay_tokens=100, rate=20.0,
             first_token_ms=8000, settle_s=0.25, warm_up=True)
QUICK = Sizes(rounds=1, gateway_streams=5, tokens=20, relay_streams=4, relay_tokens=15, rate=100.0,
              first_token_ms=1000, settle_s=0.05, warm_up=False)


@dataclass
class Tree:
    """One side of the A/B: its checkout and its running gateway and Daphne."""

    name: str
    root: Path
    gateway: Server | None = None
    gw_url: str = ""
    daphne: Server | None = None
    site: str = ""


# -- the other tree ----------------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """``commit`` checked out (detached) in a temporary directory for the ``with`` block.

    Raises:
        SystemExit: this is no git checkout, or the commit is not in it (a shallow clone).
    """
    if git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").returncode != 0:
        raise SystemExit(f"redesign_ab: commit {commit} (the tree before the redesign) is not in the git "
                         f"history of {ROOT}; a shallow clone lacks it: `git fetch --unshallow` (CI: "
                         "fetch-depth: 0) and run again")
    tmp = Path(tempfile.mkdtemp(prefix="redesign_ab_"))
    path = tmp / "tree"
    try:
        added = git("worktree", "add", "--detach", "--quiet", str(path), commit)
        if added.returncode != 0:
            raise SystemExit(f"redesign_ab: git worktree add {commit} failed: {added.stderr.strip()}")
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        git("worktree", "prune")


def this_tree() -> str:
    """This checkout's commit, and whether the code measured has changes not committed yet."""
    sha = git("rev-parse", "--short", "HEAD").stdout.strip()
    dirty = git("--no-optional-locks", "status", "--porcelain", "--", *PACKAGES, "demo_projects/django_chat").stdout
    return f"{sha} + uncommitted changes" if dirty.strip() else sha


def check_imports(root: Path) -> None:
    """Fail unless this interpreter, with ``root``'s PYTHONPATH, finds the packages in ``root`` (the
    servers then import them: a failure there stops the run with their output).

    Raises:
        SystemExit: they are not found there.
    """
    code = "import importlib.util as u; print(*(u.find_spec(m).origin for m in ('modelriver', 'django_modelriver')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **tree_env(root)}, check=False)
    files = proc.stdout.split()
    if proc.returncode != 0 or len(files) != 2 or not all(Path(f).is_relative_to(root) for f in files):
        raise SystemExit(f"redesign_ab: {sys.executable} does not find the packages of {root}:\n"
                         f"{(proc.stderr or proc.stdout)[-2000:]}")


def start(trees: Sequence[Tree], sizes: Sizes, stack: contextlib.ExitStack, profile: Path | None) -> None:
    """Each tree's gateway and its Daphne (paced answers from that gateway), all started at once;
    ``stack`` stops them. ``profile``: a directory where each Daphne writes ``<tree>.prof``."""
    script = {"tokens_per_second": sizes.rate, "first_token_ms": sizes.first_token_ms,
              "text": text_of(sizes.relay_tokens)}
    launches: list[tuple[Tree, str, Callable[[], Server]]] = []
    for tree in trees:
        gw_port, site_port = free_port(), free_port()
        tree.gw_url, tree.site = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{site_port}"
        launches += [(tree, "gateway", functools.partial(dr.start_gateway, gw_port, env=tree_env(tree.root))),
                     (tree, "daphne", functools.partial(start_daphne_probed, site_port, tree.gw_url, script,
                                                        root=tree.root, profile=prof_path(profile, tree)))]
    pool = ThreadPoolExecutor(len(launches))
    futures = [pool.submit(launch) for _, _, launch in launches]
    try:
        for (tree, kind, _), future in zip(launches, futures, strict=True):
            setattr(tree, kind, future.result())
    finally:  # Ctrl-C or a failed start: every server that did start is stopped too
        pool.shutdown(wait=True)
        for future in futures:
            if future.exception() is None:
                stack.callback(future.result().stop)


def prof_path(profile: Path | None, tree: Tree) -> str | None:
    return None if profile is None else str(profile / (re.sub(r"\W+", "_", tree.name).strip("_") + ".prof"))


# -- the rounds ----------------------------------------------------------------------------------------


async def settle(trees: Sequence[Tree], window: float) -> None:
    """Until every process of both trees is idle: no pass pays for the previous one's tail."""
    await asyncio.gather(*(dr.quiescent(server.popen.pid, window=window) for tree in trees
                           for server in (tree.gateway, tree.daphne) if server is not None))


async def gateway_pass(tree: Tree, sizes: Sizes) -> dict[str, float]:
    assert tree.gateway is not None
    script = {"tokens_per_second": dr.FLAT_OUT, "first_token_ms": 0, "text": text_of(sizes.tokens)}
    run, cpu = await direct_run(sizes.gateway_streams, script, tree.gateway, tree.gw_url)
    return {"frames_per_s": run.frames_per_s, "cpu_us_per_frame": cpu / run.frames * 1e6 if run.frames else math.nan,
            "errors": run.errors}


async def relay_pass(tree: Tree, sizes: Sizes) -> dict[str, float]:
    assert tree.daphne is not None
    relay, floor = await relay_hop(sizes.relay_streams, min(sizes.relay_streams, 20), tree.daphne, tree.site,
                                   tree.gw_url)
    frames = relay["live_frames"]
    return {**percentiles(relay["added_ms"], (50, 99)), "floor_p99": percentiles(floor["added_ms"], (99,))["p99"],
            "tokens_compared": len(relay["added_ms"]), "live_frames": frames,
            "cpu_us_per_frame": relay["live_cpu_s"] / frames * 1e6 if frames else math.nan,
            "errors": relay["errors"]}


async def measure(trees: Sequence[Tree], sizes: Sizes,
                  profile: bool = False) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Warm both trees up, then the rounds: ``{tree: {"gateway"|"relay": [one dict per round]}}``;
    ``profile``: start the Daphnes' profilers after the warm-up."""
    if sizes.warm_up:  # a server's first streams pay for first-time work (imports, caches)
        await asyncio.gather(*(dr.warm_up(tree.site) for tree in trees))
        for tree in trees:
            await gateway_pass(tree, Sizes(**{**sizes.__dict__, "gateway_streams": 2}))
    for tree in trees if profile else ():
        assert tree.daphne is not None
        os.kill(tree.daphne.popen.pid, signal.SIGUSR1)
    out: dict[str, dict[str, list[dict[str, float]]]] = {t.name: {"gateway": [], "relay": []} for t in trees}
    for i in range(sizes.rounds):
        order = trees if i % 2 == 0 else list(reversed(trees))
        for kind, one_pass in (("gateway", gateway_pass), ("relay", relay_pass)):
            for tree in order:
                await settle(trees, sizes.settle_s)
                out[tree.name][kind].append(await one_pass(tree, sizes))
        print(f"round {i + 1}/{sizes.rounds}: " + "; ".join(
            f"{t.name}: {out[t.name]['gateway'][-1]['frames_per_s']:,.0f} frames/s, relay "
            f"{out[t.name]['relay'][-1]['cpu_us_per_frame']:.0f} µs/frame, p99 {out[t.name]['relay'][-1]['p99']} ms"
            for t in trees), file=sys.stderr, flush=True)
    return out


# -- the report ------------------------------------------------------------------------------------


def compare(result: dict[str, dict[str, list[dict[str, float]]]], a: str, b: str, kind: str,
            key: str) -> dict[str, Any]:
    """Medians of ``key`` over the rounds for A and B, and the ratio B/A: the median of the rounds'
    ratios (a round's A and B ran back to back, so the machine's load drifting between rounds
    cancels out of each ratio), with the sorted ratios themselves."""
    xs = [r[key] for r in result[a][kind]]
    ys = [r[key] for r in result[b][kind]]
    per_round = sorted(y / x for x, y in zip(xs, ys, strict=True) if x and not math.isnan(x) and not math.isnan(y))
    return {"a": nan_median(xs), "b": nan_median(ys), "ratio": nan_median(per_round), "rounds": per_round}


def nan_median(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.{digits}f}"


def spread(c: dict[str, Any]) -> str:
    r = c["rounds"]
    if not r:
        return "no paired round"
    quart = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0], r[0], r[0]]
    return f"rounds' ratios {fmt(r[0])}-{fmt(r[-1])}, middle half {fmt(quart[0])}-{fmt(quart[2])}"


def summary(result: dict[str, Any], sizes: Sizes, a: str, b: str) -> list[dict[str, Any]]:
    """The rows ``run_all.py`` tabulates; measured = the median of the rounds' ratios B/A."""
    gw_what = f"{sizes.gateway_streams} streams x {sizes.tokens} tokens unpaced"
    relay_what = f"{sizes.relay_streams} streams at {sizes.rate:g} tokens/s under Daphne"
    med = f"median of {sizes.rounds} rounds"
    rows = []
    for kind, key, what, goal, digits in (
            ("gateway", "frames_per_s", f"gateway frames/s, {gw_what}", f">= {GOAL_FRAMES}", 0),
            ("relay", "cpu_us_per_frame", f"relay CPU per frame (µs), {relay_what}", f"<= {GOAL_COST}", 1),
            ("relay", "p99", f"relay added latency p99 (ms), {relay_what}", f"<= {GOAL_COST}", 2),
            ("gateway", "cpu_us_per_frame", f"gateway CPU per frame (µs), {gw_what}", None, 1),
            ("relay", "p50", f"relay added latency p50 (ms), {relay_what}", None, 2)):
        c = compare(result, a, b, kind, key)
        extra = ""
        if key == "p99":
            extra = f"; method floor {fmt(nan_median([r['floor_p99'] for r in result[b]['relay']]))}"
        met = None
        if goal is not None and not math.isnan(c["ratio"]):
            met = c["ratio"] >= GOAL_FRAMES if key == "frames_per_s" else c["ratio"] <= GOAL_COST
        elif goal is not None:
            met = False
        errors = sum(int(r["errors"]) for side in (a, b) for r in result[side][kind])
        rows.append({"metric": f"{what}: {b} / {a} ({med}: {fmt(c['b'], digits)} / {fmt(c['a'], digits)}; "
                               f"{spread(c)}{extra})",
                     "measured": fmt(c["ratio"]), "goal": goal, "met": met and not errors if met is not None else None})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, a few streams (CI)")
    parser.add_argument("--commit", default=BEFORE, help=f"the A side (default {BEFORE}, before the redesign)")
    parser.add_argument("--rounds", type=int, default=None, help=f"rounds (default {FULL.rounds}; quick 1)")
    parser.add_argument("--rate", type=float, default=None, help=f"tokens/s of the relay's paced streams "
                        f"(default {FULL.rate:g}; quick {QUICK.rate:g})")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile both Daphnes after the warm-up "
                        "(DIR/<tree>.prof, top functions printed; the figures are then not comparable)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds or args.rate:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds or sizes.rounds, "rate": args.rate or sizes.rate})
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a terminated run cleans up as on Ctrl-C
    started = time.perf_counter()
    a, b = f"before {args.commit}", f"now ({this_tree()})"
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(worktree(args.commit))
        for root in (old, ROOT):
            check_imports(root)
        trees = [Tree(a, old), Tree(b, ROOT)]
        start(trees, sizes, stack, args.profile)
        result = asyncio.run(measure(trees, sizes, args.profile is not None))
    elapsed = time.perf_counter() - started
    for tree in trees if args.profile else ():
        print(f"{tree.name}: Daphne's functions by own time (cProfile, from the warm-up's end):")
        print("\n".join("  " + line for line in profile_top(str(prof_path(args.profile, tree)), 25)))
    rows = summary(result, sizes, a, b)
    for row in rows:
        verdict = "" if row["met"] is None else ("  met" if row["met"] else "  MISSED")
        print(f"{row['metric']}: {row['measured']} (goal {row['goal'] or '—'}){verdict}")
    notes = (f"A = {args.commit} (git worktree), B = this tree, same interpreter, each with PYTHONPATH on its "
             f"own packages and demo; {sizes.rounds} interleaved rounds (A,B then B,A), medians; ratio B/A = the "
             f"median of the rounds' ratios; "
             f"{elapsed:.0f} s")
    if args.json:
        print(json.dumps({"name": "redesign_ab", "seconds": round(elapsed, 1), "summary": rows, "notes": notes,
                          "result": result}))
    return 1 if args.check and any(row["met"] is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
