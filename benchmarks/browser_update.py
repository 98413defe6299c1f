"""The browser module's update for a ~4 KB structured answer (issue 18: under 2 ms).

    .venv/bin/python benchmarks/browser_update.py            # 300 rounds
    .venv/bin/python benchmarks/browser_update.py --quick    # 30 rounds

Runs ``benchmarks/browser_update.mjs`` in Node (the module's ``RequestState`` as the Django widget
and the Streamlit component use it): ``cold`` is one update reading a whole 4 KB answer's partial
object and prose at once (the worst case: after a reload or a failover reset); ``stream`` is the
mean cost of one update when the view reads them after every ~4-character token, unthrottled.
The medians count (the 95th percentiles, which catch the odd GC pause, are in the notes).

Goal: the cold update's median under 2 ms. ``--check`` exits 1 above it; ``--json`` prints one
JSON object (its ``summary`` rows for run_all.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().with_suffix(".mjs")
GOAL_MS = 2.0


def measure(quick: bool) -> dict[str, Any]:
    """Run the Node benchmark; returns its JSON report."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("this benchmark needs Node.js (`node` on PATH)")
    proc = subprocess.run([node, str(SCRIPT), *(["--quick"] if quick else [])], capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    report = measure(args.quick)
    cold, stream = report["cold_ms"], report["stream_update_ms"]
    met = cold["median"] < GOAL_MS
    result: dict[str, Any] = {
        "name": "browser_update",
        "report": report,
        "summary": [
            {"metric": f"browser module: one update reading a {report['bytes']} B answer whole (median)",
             "measured": f"{cold['median']:.3f} ms", "goal": f"< {GOAL_MS:g} ms", "met": met},
            {"metric": "browser module: one update per token while streaming, unthrottled (median)",
             "measured": f"{stream['median']:.3f} ms"},
        ],
        "notes": (f"{report['tokens']} tokens, {report['rounds']} rounds; 95th percentiles: whole answer "
                  f"{cold['p95']:.3f} ms, per token {stream['p95']:.3f} ms"),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for row in result["summary"]:
            print(f"{row['metric']}: {row['measured']}" + (f" (goal {row['goal']})" if row.get("goal") else ""))
        print(result["notes"])
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
