"""Run every benchmark, write ``benchmarks/RESULTS.md`` and the README's results table.

    .venv/bin/python benchmarks/run_all.py            # full runs (what `make bench` does)
    .venv/bin/python benchmarks/run_all.py --quick    # the CI-sized runs
    .venv/bin/python benchmarks/run_all.py --only realm_streams   # re-run some, keep the rest

With ``--only``, the named benchmarks' rows and notes replace theirs in the existing RESULTS.md
(rows of a benchmark not there yet go at the end of the table); every other row, note and
hand-written section is kept, and the header says what was re-run, when, and how (a line per
re-run, newest first; a benchmark re-run again leaves its older line).

Each ``benchmarks/<name>.py`` takes ``--quick`` and ``--json``; with ``--json`` its last stdout
line is one JSON object whose ``summary`` is a list of rows ``{metric, measured, goal, met}``
(``goal`` and ``met`` may be null when a row is informative only). Ratios are measured side by
side in one run, so they hold on a noisy machine; absolute numbers are this machine's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
ORDER = ["core_decode", "gateway_streams", "django_relay", "relay_throughput", "relay_latency",
         "scale", "streamlit_ttft", "gradio_ttft", "realm_streams", "soak"]


def scripts() -> list[Path]:
    found = {p.stem: p for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all"}
    return [found[n] for n in ORDER if n in found] + [found[n] for n in sorted(found) if n not in ORDER]


def run(script: Path, quick: bool, extra: list[str]) -> dict[str, Any]:
    """Run one benchmark; returns its JSON result, or an error record."""
    args = [sys.executable, str(script), "--json", *(["--quick"] if quick else []), *extra]
    print(f"==> {script.name}{' --quick' if quick else ''}", flush=True)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"name": script.stem, "error": (proc.stderr or proc.stdout)[-2000:], "summary": []}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"name": script.stem, "error": f"last line is not JSON: {lines[-1][:200]}", "summary": []}
    result.setdefault("name", script.stem)
    return result


def verdict(row: dict[str, Any]) -> str:
    met = row.get("met")
    return "—" if met is None else ("met" if met else "**missed**")


TABLE_HEAD = ["| benchmark | metric | measured | goal | verdict |", "|---|---|---|---|---|"]
ROW = re.compile(r"^\| `([^`]+)` \|")
NOTE = re.compile(r"^- `([^`]+)`(: | failed:)")


def rows(result: dict[str, Any]) -> list[str]:
    """One benchmark's table rows."""
    if result.get("error"):
        return [f"| `{result['name']}` | failed to run | — | — | **error** |"]
    return [f"| `{result['name']}` | {row['metric']} | {row['measured']} | "
            f"{row.get('goal') or '—'} | {verdict(row)} |" for row in result.get("summary", [])]


def table(results: list[dict[str, Any]]) -> str:
    return "\n".join([*TABLE_HEAD, *(line for result in results for line in rows(result))])


def note(result: dict[str, Any]) -> str | None:
    return f"- `{result['name']}`: {result['notes']}" if result.get("notes") else None


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def write(results: list[dict[str, Any]], quick: bool, command: str) -> str:
    body = table(results)
    notes = [n for r in results if (n := note(r))]
    errors = [f"- `{r['name']}` failed:\n\n```\n{r['error']}\n```" for r in results if r.get("error")]
    text = "\n".join([
        "# Benchmark results", "",
        f"- machine: {machine()}",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`{' (quick sizes)' if quick else ''}", "",
        "Ratios are measured side by side in the same run; each script's docstring says how.", "",
        body, "", *(["## Notes", "", *notes, ""] if notes else []), *errors, "",
    ])
    RESULTS.write_text(text)
    return body


def merge(results: list[dict[str, Any]], quick: bool, command: str) -> tuple[str, str]:
    """Put ``results`` into the existing RESULTS.md, keeping everything else (see the docstring).

    Returns:
        The merged table, and how it was measured (Markdown, for the README).
    """
    if not RESULTS.exists():
        return write(results, quick, command), command
    fresh = {r["name"]: r for r in results}
    lines = RESULTS.read_text().splitlines()
    out: list[str] = []
    placed: set[str] = set()
    noted: set[str] = set()
    stamps: list[str] = []
    for i, line in enumerate(lines):
        row, old_note = ROW.match(line), NOTE.match(line)
        if row and row.group(1) in fresh:
            name = row.group(1)
            if name not in placed:
                out.extend(rows(fresh[name]))
                placed.add(name)
            continue
        if old_note and old_note.group(1) in fresh:
            name = old_note.group(1)
            if name not in noted and (new := note(fresh[name])) is not None:
                out.append(new)
            noted.add(name)
            continue
        if line.startswith("- updated: "):
            if (kept := restamp(line, fresh.keys())) is not None:
                stamps.append(kept)
            continue  # re-added below, after the new one
        out.append(line)
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("|") and not next_line.startswith("|"):  # the table's end
            for name in fresh.keys() - placed:
                out.extend(rows(fresh[name]))
                placed.add(name)
    stamp = (f"- updated: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {ticked(fresh)} re-run with "
             f"`{command}`{' (quick sizes)' if quick else ''}")
    at = next((i + 1 for i, line in enumerate(out) if line.startswith("- command: ")), 1)
    out[at:at] = [stamp, *stamps]
    RESULTS.write_text("\n".join(out) + "\n")
    body = "\n".join(results_table(out))
    original = next((line[len("- command: "):] for line in out if line.startswith("- command: ")),
                    "`make bench`")
    rerun = [*fresh, *(n for line in stamps for n in stamped_names(line) if n not in fresh)]
    how = f"{original.split(' (')[0]}, {ticked(rerun)} re-run with `{command}`"
    if stamps:
        how = f"{original.split(' (')[0]}; {ticked(rerun)} re-run since (when and how: the results' header)"
    return body, how


def results_table(lines: list[str]) -> list[str]:
    """The results table among RESULTS.md's ``lines``, without the tables of hand-written sections."""
    start = lines.index(TABLE_HEAD[0]) if TABLE_HEAD[0] in lines else 0
    return list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))


STAMP = re.compile(r"^- updated: (?P<when>[^,]+), (?P<names>(?:`\w+`(?:, )?)+) re-run with (?P<how>`.*)$")


def ticked(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def stamped_names(line: str) -> list[str]:
    match = STAMP.match(line)
    return re.findall(r"`(\w+)`", match["names"]) if match else []


def restamp(line: str, rerun: Iterable[str]) -> str | None:
    """An earlier re-run's header line without the benchmarks re-run now (None: nothing left)."""
    match = STAMP.match(line)
    if match is None:
        return None  # an old free-form stamp: superseded
    left = [n for n in stamped_names(line) if n not in set(rerun)]
    how = match["how"].split("; the other rows", 1)[0]
    return f"- updated: {match['when']}, {ticked(left)} re-run with {how}" if left else None


def update_readme(body: str, how: str) -> None:
    """Replace the README's results block; ``how``: the command(s) that measured it, Markdown."""
    readme = README.read_text()
    if START not in readme or END not in readme:
        return
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    link = "[benchmarks/RESULTS.md](benchmarks/RESULTS.md)"
    block = f"{START}\nMeasured with {how} (full figures and notes: {link}).\n\n{body}\n{END}"
    README.write_text(head + block + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized runs")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    opts = parser.parse_args()
    selected = [s for s in scripts() if opts.only is None or s.stem in opts.only]
    results = [run(s, opts.quick, []) for s in selected]
    command = "make bench" if not opts.quick and opts.only is None else " ".join(
        ["python benchmarks/run_all.py", *sys.argv[1:]])
    if opts.only is None:
        body, how = write(results, opts.quick, command), f"`{command}`"
    else:
        body, how = merge(results, opts.quick, command)
    if not opts.no_readme:
        update_readme(body, how)
    print(body)
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
