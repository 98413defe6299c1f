"""The README's core examples run as written against a real `modelriver dev`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support import ROOT, Gateway

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
CORE = [b for b in BLOCKS if "from modelriver import" in b]


def test_readme_has_an_async_and_a_sync_example_of_about_ten_lines() -> None:
    assert any("AsyncModelRiver" in b for b in CORE)
    assert any("ModelRiver()" in b for b in CORE)
    assert all(len(b.strip().splitlines()) <= 16 for b in CORE)


@pytest.mark.parametrize("code", CORE, ids=["async", "sync"][: len(CORE)])
def test_readme_example_runs(code: str, gateway: Gateway) -> None:
    done = subprocess.run([sys.executable, "-c", code], env={**gateway.env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the example printed nothing"
    assert gateway.api_key not in done.stdout + done.stderr
