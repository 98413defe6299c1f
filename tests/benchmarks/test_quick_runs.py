"""Every benchmark runs at its CI size, so none can rot: exit 0 and a well-formed JSON report.

No timing is asserted here (these machines are noisy); goals live in the reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all")


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 1


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_run_reports(script: Path) -> None:
    proc = subprocess.run([sys.executable, str(script), "--quick", "--json"], capture_output=True,
                          text=True, timeout=230, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:] or proc.stdout[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = result["summary"]
    assert rows, "the report has no summary rows"
    for row in rows:
        assert {"metric", "measured"} <= set(row)
