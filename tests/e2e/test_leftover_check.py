"""The leftover-process check (``support.leftovers``) fails a run that leaves a process behind.

Each case runs pytest in a subprocess on a tiny test module in a temporary directory, with the
check loaded (``-p support.leftovers``): a test that leaks a ``sleep`` fails the run (exit 1, the
process named under "leftover processes") and the check kills it; the same test stopping its
``sleep`` passes. The leak is tried as a direct child of a plain run, and as an orphan of an
xdist worker (reparented when its shell exits: only the run's environment tag finds it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from support import ROOT

LEAKS = {
    "child": """
        import subprocess
        from pathlib import Path

        def test_leaks_a_child(tmp_path):
            proc = subprocess.Popen(["sleep", "120"])
            Path(__file__).with_name("pid").write_text(str(proc.pid))
    """,
    "orphan": """
        import subprocess
        from pathlib import Path

        def test_leaks_an_orphan():
            # the shell exits at once; its sleep (own session) is reparented, no longer a descendant
            out = subprocess.run(["sh", "-c", "setsid sleep 120 >/dev/null 2>&1 & echo $!"],
                                 capture_output=True, text=True, check=True).stdout
            Path(__file__).with_name("pid").write_text(out.strip())
    """,
    "none": """
        import subprocess
        from pathlib import Path

        def test_stops_what_it_starts():
            proc = subprocess.Popen(["sleep", "120"])
            Path(__file__).with_name("pid").write_text(str(proc.pid))
            proc.terminate()
            proc.wait()
    """,
}


def run_pytest(tmp_path: Path, leak: str, *xdist: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the ``leak`` module under the check; returns the run and the pid its test wrote."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_leak.py").write_text(textwrap.dedent(LEAKS[leak]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
           "MODELRIVER_LEFTOVER_GRACE": "0.5", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # a quick start
    plugins = ["-p", "support.leftovers", "-p", "no:cacheprovider", *(["-p", "xdist.plugin"] if xdist else [])]
    done = subprocess.run([sys.executable, "-m", "pytest", *plugins, "-q", *xdist, "test_leak.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done, int((tmp_path / "pid").read_text())


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(("leak", "xdist"), [("child", ()), ("orphan", ("-n", "1"))])
def test_a_run_that_leaves_a_process_fails_and_the_process_is_killed(
        tmp_path: Path, leak: str, xdist: tuple[str, ...]) -> None:
    done, pid = run_pytest(tmp_path, leak, *xdist)
    try:
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "1 passed" in output  # the test itself passed: the check failed the run
        assert "leftover processes" in output and f"pid {pid} (sleep 120)" in output, output
        assert not alive(pid), "the check names the leftover process and kills it"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_run_that_stops_what_it_starts_passes(tmp_path: Path) -> None:
    done, pid = run_pytest(tmp_path, "none")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leftover processes" not in done.stdout
    assert not alive(pid)
