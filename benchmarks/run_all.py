"""Run every benchmark, write ``benchmarks/RESULTS.md`` and the README's results table.

    .venv/bin/python benchmarks/run_all.py            # full runs (what `make bench` does)
    .venv/bin/python benchmarks/run_all.py --quick    # the CI-sized runs

Each ``benchmarks/<name>.py`` takes ``--quick`` and ``--json``; with ``--json`` its last stdout
line is one JSON object whose ``summary`` is a list of rows ``{metric, measured, goal, met}``
(``goal`` and ``met`` may be null when a row is informative only). Ratios are measured side by
side in one run, so they hold on a noisy machine; absolute numbers are this machine's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
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


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | metric | measured | goal | verdict |", "|---|---|---|---|---|"]
    for result in results:
        if result.get("error"):
            lines.append(f"| `{result['name']}` | failed to run | — | — | **error** |")
            continue
        for row in result.get("summary", []):
            lines.append(f"| `{result['name']}` | {row['metric']} | {row['measured']} | "
                         f"{row.get('goal') or '—'} | {verdict(row)} |")
    return "\n".join(lines)


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
    notes = [f"- `{r['name']}`: {r['notes']}" for r in results if r.get("notes")]
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


def update_readme(body: str, command: str) -> None:
    readme = README.read_text()
    if START not in readme or END not in readme:
        return
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    link = "[benchmarks/RESULTS.md](benchmarks/RESULTS.md)"
    block = f"{START}\nMeasured with `{command}` (full figures and notes: {link}).\n\n{body}\n{END}"
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
    body = write(results, opts.quick, command)
    if not opts.no_readme:
        update_readme(body, command)
    print(body)
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
