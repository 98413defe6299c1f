"""`make demo`: the embedded gateway plus every demo app, with the URLs to open.

Ports come from the environment (defaults in brackets): MODELRIVER_DEV_PORT [8787],
DJANGO_PORT [8000], STREAMLIT_PORT [8501], GRADIO_SERVER_PORT [7860]. Ctrl-C stops everything.
Set MODELRIVER_API_BASE / MODELRIVER_API_KEY to run the demos against another gateway instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "demo_projects"
KEY_FILE = ROOT / ".demo-key"  # this run's dev key, for the gateway's request log page
PY = sys.executable


def port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Poll ``url`` until it answers (the demo servers print nothing machine-readable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def main() -> int:
    gw_port = port("MODELRIVER_DEV_PORT", 8787)
    external = "MODELRIVER_API_BASE" in os.environ
    api_key = os.environ.get("MODELRIVER_API_KEY") or f"mr_dev_{secrets.token_hex(12)}"
    api_base = os.environ.get("MODELRIVER_API_BASE", f"http://127.0.0.1:{gw_port}")
    env = {**os.environ, "MODELRIVER_API_BASE": api_base, "MODELRIVER_API_KEY": api_key,
           "PYTHONUNBUFFERED": "1"}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, cwd=ROOT, env={**env, **extra}, start_new_session=True)
        procs.append((name, proc))
        return proc

    urls: list[tuple[str, str]] = []
    try:
        if not external:
            gw = start("gateway", [PY, "-m", "modelriver", "dev", "--port", str(gw_port),
                                   "--api-key", api_key])
            if not wait_http(f"{api_base}/health", gw):
                print("error: the gateway did not start", file=sys.stderr)
                return 1
            urls.append(("Gateway request log", f"{api_base}/"))
            if "MODELRIVER_API_KEY" not in os.environ:  # the log page asks for the key: a file, not stdout
                fd = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(api_key + "\n")
        django_dir = DEMOS / "django_chat"
        if (django_dir / "manage.py").exists():
            dport = port("DJANGO_PORT", 8000)
            subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=django_dir,
                           env=env, check=True)
            proc = start("django", [PY, str(django_dir / "manage.py"), "runserver",
                                    f"127.0.0.1:{dport}", "--noreload"])
            urls.append(("Django chat", f"http://127.0.0.1:{dport}/"))
            threading.Thread(target=wait_http, args=(urls[-1][1], proc), daemon=True).start()
        if (DEMOS / "streamlit_chat" / "app.py").exists():
            sport = port("STREAMLIT_PORT", 8501)
            start("streamlit", [PY, "-m", "streamlit", "run", str(DEMOS / "streamlit_chat" / "app.py"),
                                "--server.port", str(sport), "--server.address", "127.0.0.1",
                                "--server.headless", "true", "--browser.gatherUsageStats", "false"])
            urls.append(("Streamlit chat", f"http://127.0.0.1:{sport}/"))
        if (DEMOS / "gradio_chat" / "app.py").exists():
            gport = port("GRADIO_SERVER_PORT", 7860)
            start("gradio", [PY, str(DEMOS / "gradio_chat" / "app.py")],
                  GRADIO_SERVER_PORT=str(gport), GRADIO_SERVER_NAME="127.0.0.1",
                  GRADIO_ANALYTICS_ENABLED="False")
            urls.append(("Gradio chat", f"http://127.0.0.1:{gport}/"))
        for name, url in urls:
            ok = next((p for n, p in procs if n in name.lower()), None)
            if ok is not None and name != "Gateway request log":
                wait_http(url, ok, timeout=90)
        print("\n  ModelRiver demos are running (Ctrl-C stops them):\n")
        for name, url in urls:
            print(f"    {name:<22} {url}")
        print(f"\n  API base {api_base}  (the API key stays on the server side)", flush=True)
        if not external and "MODELRIVER_API_KEY" not in os.environ:
            print(f"  The request log asks for this run's key: it is in {KEY_FILE.relative_to(ROOT)}"
                  " (readable by you only)", flush=True)
        print(flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"error: {name} exited with {proc.returncode}", file=sys.stderr)
                    return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
