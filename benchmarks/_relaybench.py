"""Shared parts of the relay benchmarks: the plain ``websockets`` forwarder, a Daphne with a task
probe, and the three paths (direct, forwarder, Django relay) side by side.

The clients, the gateway and Daphne launchers, the RSS sampler and the relay's request starting
come from ``benchmarks/django_relay.py`` (imported, not copied).

The forwarder is the raw-socket reference: a separate process (like Daphne) that accepts each
client's WebSocket and opens one upstream WebSocket to the gateway on the same path and query,
then copies every message both ways, unparsed. It is what a relay costs when it does nothing but
relay. Run it alone: ``python benchmarks/_relaybench.py forward PORT UPSTREAM_HOST:PORT``.

``python benchmarks/_relaybench.py daphne ARGS...`` runs Daphne's CLI with a probe that prints
``probe tasks=<asyncio tasks> rss=<bytes>`` every second (for the soak's open-task counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import django_relay as dr  # noqa: E402  (the clients and launchers of benchmarks/django_relay.py)
from _procs import tree_env  # noqa: E402

__all__ = ["HOP_CORE", "REST_CORE", "direct_run", "dr", "pin", "profile_top", "relay_hop",
           "start_daphne_probed", "start_forwarder", "throughput_paths"]

FORWARDER_READY = "forwarder ready"


# -- the forwarder -------------------------------------------------------------------------------


async def _forward(port: int, upstream: str) -> None:
    import websockets

    async def handler(client: Any) -> None:
        path = client.request.path
        try:
            async with websockets.connect(f"ws://{upstream}{path}", compression=None, max_size=None,
                                          ping_interval=None, open_timeout=60, close_timeout=1) as up:

                async def pipe(src: Any, dst: Any) -> None:
                    with contextlib.suppress(Exception):
                        async for message in src:
                            await dst.send(message)
                    with contextlib.suppress(Exception):
                        await dst.close()

                await asyncio.gather(pipe(client, up), pipe(up, client))
        except Exception:
            with contextlib.suppress(Exception):
                await client.close(1011)

    async with websockets.serve(handler, "127.0.0.1", port, compression=None, max_size=None,
                                ping_interval=None, close_timeout=1):
        print(FORWARDER_READY, flush=True)
        await asyncio.Future()


def start_forwarder(port: int, upstream: str) -> dr.Server:
    """The plain forwarder on ``port`` in front of ``upstream`` (``host:port``), a subprocess."""
    return dr.Server.start([sys.executable, str(Path(__file__).resolve()), "forward", str(port), upstream],
                           FORWARDER_READY, env={})


# -- Daphne with a probe --------------------------------------------------------------------------


def _daphne_with_probe(argv: list[str]) -> None:
    import daphne.server  # noqa: F401  (installs the asyncio reactor)
    import psutil
    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor

    me = psutil.Process()
    profile_path = os.environ.get("BENCH_PROFILE")
    if profile_path:  # cProfile of the relay from SIGUSR1 (after the warm-up) to its shutdown
        import cProfile
        import signal

        profiler = cProfile.Profile()
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

        def dump() -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        reactor.addSystemEventTrigger("before", "shutdown", dump)  # type: ignore[attr-defined]

    def probe() -> None:
        with contextlib.suppress(Exception):
            tasks = len(asyncio.all_tasks(asyncio.get_event_loop()))
            print(f"probe tasks={tasks} rss={me.memory_info().rss}", flush=True)
        reactor.callLater(1.0, probe)  # type: ignore[attr-defined]

    reactor.callLater(1.0, probe)  # type: ignore[attr-defined]
    CommandLineInterface().run(argv)


def start_daphne_probed(port: int, api: str, script: dict[str, Any], *, profile: str | None = None,
                        env: dict[str, str] | None = None, root: Path | None = None) -> dr.Server:
    """``django_relay.start_daphne`` with the task probe (same env, same app); ``profile``: a path
    where the relay's cProfile stats are written when it stops; ``env``: more variables; ``root``:
    another checkout whose demo and packages it runs (an A/B; default: this one's demo, the installed
    packages)."""
    demo = dr.DEMO if root is None else root / "demo_projects" / "django_chat"
    path = [str(demo)] + ([] if root is None else [tree_env(root)["PYTHONPATH"]])
    env = {**(env or {}), **({"BENCH_PROFILE": profile} if profile else {}),
           "MODELRIVER_API_BASE": api, "MODELRIVER_API_KEY": dr.API_KEY, "MODELRIVER_WEBHOOK_SECRET": dr.SECRET,
           "DJANGO_DEBUG": "0", "DJANGO_CHAT_SCRIPTED": json.dumps(script), "PYTHONPATH": os.pathsep.join(path),
           "DJANGO_SETTINGS_MODULE": "chatsite.settings", **dr.UNLIMITED_STARTS}
    return dr.Server.start([sys.executable, str(Path(__file__).resolve()), "daphne", "-b", "127.0.0.1", "-p",
                            str(port), "chatsite.asgi:application"], "Listening on TCP address", env=env,
                           cwd=demo)


def last_probe(server: dr.Server) -> dict[str, int]:
    for line in reversed(server.lines):
        if line.startswith("probe "):
            return {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}
    return {}


# -- the three paths, side by side ----------------------------------------------------------------


def via_port(url: str, port: int) -> str:
    head, rest = url.split("//", 1)
    return f"{head}//127.0.0.1:{port}/{rest.split('/', 1)[1]}"


def text_of(tokens: int) -> str:
    return " ".join(f"w{i}" for i in range(tokens))


async def direct_run(n: int, script: dict[str, Any], gateway: dr.Server, gw_url: str) -> tuple[dr.Run, float]:
    """N answers created on the gateway, then N clients straight to it: the run, and the gateway's
    CPU seconds while the clients streamed."""
    answers = await dr.create_direct(gw_url, n, script)
    streams = [dr.Stream(dr.socket_url(a), a["websocket_channel"]) for a in answers]
    with dr.RssSampler(gateway.popen.pid) as rss:
        await asyncio.gather(*(dr.listen(s, record=False) for s in streams))
    return dr.summarize("direct", streams, rss), rss.cpu


async def throughput_paths(n: int, tokens: int, gateway: dr.Server, gw_url: str) -> dict[str, dr.Run]:
    """Flat-out answers of ``tokens`` tokens to N clients: direct, through the forwarder, through the
    relay. Frames/s as ``django_relay`` counts them (first connect .. last final)."""
    script = {"tokens_per_second": dr.FLAT_OUT, "first_token_ms": 0, "text": text_of(tokens)}
    runs: dict[str, dr.Run] = {}
    runs["direct"], _ = await direct_run(n, script, gateway, gw_url)

    fport = dr.free_port()
    forwarder = start_forwarder(fport, gw_url.split("//", 1)[1])
    try:
        answers = await dr.create_direct(gw_url, n, script)
        await dr.quiescent(gateway.popen.pid)  # the answers are complete, as the relay's will be
        streams = [dr.Stream(via_port(dr.socket_url(a), fport), a["websocket_channel"]) for a in answers]
        with dr.RssSampler(forwarder.popen.pid) as rss:
            await asyncio.gather(*(dr.listen(s, record=False) for s in streams))
        runs["forwarder"] = dr.summarize("forwarder", streams, rss)
    finally:
        forwarder.stop()

    port = dr.free_port()
    daphne = dr.start_daphne(port, gw_url, script)
    try:
        site = f"http://127.0.0.1:{port}"
        await dr.warm_up(site)
        with dr.RssSampler(daphne.popen.pid) as rss:
            answers = await dr.create_relay(site, n)
            await dr.quiescent(daphne.popen.pid)  # the pumps hold the whole answers
            streams = [dr.Stream(dr.socket_url(a), a["websocket_channel"], origin=site) for a in answers]
            await asyncio.gather(*(dr.listen(s, record=False) for s in streams))
        runs["relay"] = dr.summarize("relay", streams, rss)
    finally:
        daphne.stop()
    return runs


def _added(hops: Sequence[dr.Stream], shadows: Sequence[dr.Stream]) -> list[float]:
    """Per token: arrival through the hop minus arrival at the direct shadow client (ms); only
    tokens both got live (not the replay a join starts with)."""
    added = []
    for hop, direct in zip(hops, shadows, strict=True):
        live_from = max(hop.joined, direct.joined) + 0.05
        for seq, at in direct.arrivals.items():
            if seq in hop.arrivals and min(at, hop.arrivals[seq]) > live_from:
                added.append((hop.arrivals[seq] - at) * 1000)
    return added


HOP_CORE, REST_CORE = 1, 0
"""With ``pin``: the hop (forwarder or Daphne) runs on core 1, the gateway and the clients on core 0."""


def pin(pid: int, core: int) -> None:
    """Run every thread of process ``pid`` on ``core`` only (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {core})


async def relay_hop(n: int, sample: int, daphne: dr.Server, site: str,
                    gw_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """N streams through a warm Daphne (its scripted answers paced), a direct shadow client on each
    of ``sample`` channels (the latency the relay adds) and a second on five of them (the method's
    floor): the relay's figures and the floor's. ``cpu_s``: Daphne's CPU over the run (starts
    included); ``live_cpu_s`` and ``live_frames``: its CPU and the frames its clients got from the
    moment all had joined (or failed) to the end."""
    with dr.RssSampler(daphne.popen.pid) as rss:
        answers = await dr.create_relay(site, n)
        hops = [dr.Stream(dr.socket_url(a), a["websocket_channel"], origin=site) for a in answers]
        sampled = [a["channel_id"] for a in answers[:sample]]
        shadows = [dr.Stream(dr.socket_url(a), a["websocket_channel"])
                   for a in await dr.reconnect_direct(gw_url, sampled)]
        twins = [dr.Stream(dr.socket_url(a), a["websocket_channel"])  # a few: they add load too
                 for a in await dr.reconnect_direct(gw_url, sampled[:5])]
        done = asyncio.ensure_future(asyncio.gather(*(dr.listen(s, record=True) for s in hops + shadows + twins)))
        while not all(s.joined or s.error for s in hops):  # polled: the clients set no event
            if (await asyncio.wait({done}, timeout=0.005))[0]:
                break
        live_cpu, live_frames = rss.cpu_now(), sum(s.frames for s in hops)
        await done
        live_cpu, live_frames = rss.cpu_now() - live_cpu, sum(s.frames for s in hops) - live_frames
    relay = {"added_ms": _added(hops[:sample], shadows), "errors": sum(bool(s.error) for s in hops),
             "cpu_s": round(rss.cpu, 2), "live_cpu_s": live_cpu, "live_frames": live_frames}
    floor = {"added_ms": _added(twins, shadows[:5]), "errors": sum(bool(s.error) for s in twins), "cpu_s": 0.0}
    return relay, floor


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    return {f"p{q:g}": round(dr.percentile(values, q), 2) for q in qs}


@contextlib.contextmanager
def running_gateway(*, core: int | None = None) -> Iterator[tuple[dr.Server, str]]:
    """`modelriver dev` on a free port for the ``with`` block: the process and its URL; ``core``:
    the one CPU core it runs on."""
    port = dr.free_port()
    gateway = dr.start_gateway(port)
    if core is not None:
        pin(gateway.popen.pid, core)
    try:
        yield gateway, f"http://127.0.0.1:{port}"
    finally:
        gateway.stop()


def sizes_arg(value: str) -> list[int]:
    """``--sizes 100,1000`` → [100, 1000]."""
    return [int(s) for s in value.split(",")]


def progress(total: int, desc: str) -> Any:
    """A tqdm bar on stderr (disabled when stderr is not a terminal, as in CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty()
                and not os.environ.get("BENCH_PROGRESS"), leave=False)


def now() -> float:
    return time.perf_counter()


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "forward":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_forward(int(sys.argv[2]), sys.argv[3]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "daphne":
        _daphne_with_probe(sys.argv[2:])
    else:
        sys.exit(__doc__)


def profile_top(path: str, limit: int = 15) -> list[str]:
    """The functions with the most own time in a cProfile dump: ``"<own s> <calls> <where>"``."""
    import pstats

    stats = pstats.Stats(path)
    idle = ("poll' of 'select.epoll",)  # waiting for I/O is not work
    rows = sorted(((k, v) for k, v in stats.stats.items() if not any(i in k[2] for i in idle)),  # type: ignore[attr-defined]
                  key=lambda kv: kv[1][2], reverse=True)[:limit]
    return [f"{tt:7.2f}s {nc:>8} {Path(fn).name}:{line}({name})" for (fn, line, name), (_, nc, tt, _, _) in rows]
