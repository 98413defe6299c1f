"""A README's install line and quickstart, read from its Markdown and carried out as a user would.

The sections whose heading starts with "Install" or "Quickstart" are read in order. A code block
whose first line names a file (``# mysite/urls.py``, ``{# chat/templates/chat/index.html #}``,
``# mysite/settings.py (add at the end)``) is written to that file, or appended to it, exactly as
printed. A ``bash`` block is run line by line: ``pip install`` is answered with the wheels (its
requirements are checked against them), ``cd`` and ``export`` change the directory and the
environment, a server (``modelriver dev``, ``runserver``, ``daphne``, ``streamlit run``,
``python app.py``) is started in the background, anything else runs to completion and must exit 0.
The only changes made to what the README says are each server's port (a free one instead of the
README's 8787 / 8000 / 8501 / 7860, substituted in the commands and in the exported URLs), binding to
127.0.0.1, and no browser or usage statistics for Streamlit and Gradio. The environment is built from
nothing (no ``VIRTUAL_ENV``, ``PYTHONPATH`` or ``DJANGO_SETTINGS_MODULE`` of the test run leaks in).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from packaging.requirements import Requirement

from support import ROOT, Process, free_port

PACKAGES = {
    "modelriver": ROOT / "core",
    "django-modelriver": ROOT / "integrations" / "django",
    "streamlit-modelriver": ROOT / "integrations" / "streamlit",
    "gradio-modelriver": ROOT / "integrations" / "gradio",
}
GATEWAY_PORT = 8787
_FILE_MARKER = re.compile(r"^(?:#|\{#)\s*(?P<path>[\w./-]+\.\w+)\s*(?P<append>\(add at the end\))?\s*(?:#\})?\s*$")


@dataclass(frozen=True)
class Block:
    info: str
    code: str

    @property
    def file(self) -> tuple[str, bool] | None:
        """The (path, append) this block is meant for, when its first line names a file."""
        match = _FILE_MARKER.match(self.code.splitlines()[0]) if self.code else None
        return (match["path"], bool(match["append"])) if match else None


def blocks(readme: Path, *section_prefixes: str) -> list[Block]:
    """The fenced code blocks of the level-2 sections whose titles start with one of the prefixes."""
    tokens = MarkdownIt("commonmark").parse(readme.read_text(encoding="utf-8"))
    found: list[Block] = []
    inside = False
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            inside = tokens[i + 1].content.startswith(section_prefixes)
        elif inside and token.type == "fence":
            found.append(Block(token.info.strip(), token.content))
    return found


def links(readme: Path) -> list[str]:
    """Every link target in the README (inline links and autolinks)."""
    tokens = MarkdownIt("commonmark").parse(readme.read_text(encoding="utf-8"))
    return [str(child.attrs["href"]) for token in tokens if token.children
            for child in token.children if child.type == "link_open"]


@dataclass
class Server:
    kind: str
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Quickstart:
    """Runs the blocks in ``workdir`` with the venv's ``bin`` first on PATH (and nothing of the repo)."""

    venv: Path
    workdir: Path
    wheels: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cwd = self.workdir
        self.gateway_port = free_port()
        self.env = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "VIRTUAL_ENV": str(self.venv),
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
            # support.leftovers finds what a test run left running by this tag
            **{k: v for k, v in os.environ.items() if k == "MODELRIVER_TEST_RUN"},
        }

    def run(self, code_blocks: list[Block]) -> None:
        for block in code_blocks:
            if block.info.split()[:1] == ["bash"]:
                for line in block.code.splitlines():
                    self.command(line)
            elif block.file:
                path, append = block.file
                target = self.cwd / path
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("a" if append else "w", encoding="utf-8") as f:
                    f.write(("\n" if append else "") + block.code)

    def command(self, line: str) -> None:
        argv = shlex.split(line, comments=True)
        if not argv:
            return
        background = argv[-1] == "&"
        argv = [a for a in argv if a != "&"]
        if argv[:2] == ["pip", "install"]:
            self.installed = argv[2:]
            self.install(self.installed)
        elif argv[0] == "cd":
            self.cwd = self.cwd / argv[1]
        elif argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value.replace(f":{GATEWAY_PORT}", f":{self.gateway_port}")
        elif argv[:2] == ["modelriver", "dev"]:
            self.serve("gateway", [*argv, "--port", str(self.gateway_port)], self.gateway_port,
                       ready=lambda port: _answers(f"http://127.0.0.1:{port}/health"))
        elif argv[1:3] == ["manage.py", "runserver"]:
            port = free_port()
            self.serve("runserver", [*argv, f"127.0.0.1:{port}", "--noreload"], port)
        elif argv[0] == "daphne":
            port = free_port()
            self.serve("daphne", [*argv[:1], "-b", "127.0.0.1", "-p", str(port), *argv[1:]], port)
        elif argv[:2] == ["streamlit", "run"]:
            port = free_port()
            self.serve("streamlit", [*argv, "--server.port", str(port), "--server.headless", "true",
                                     "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                                     "--server.fileWatcherType", "none"], port,
                       ready=lambda p: _answers(f"http://127.0.0.1:{p}/_stcore/health"))
        elif argv[0] == "python" and argv[1:] == ["app.py"]:
            port = free_port()
            self.serve("gradio", argv, port, extra_env={
                "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False"})
        else:
            assert not background, f"unexpected background command: {line}"
            self.check(argv)

    def install(self, specs: list[str]) -> None:
        """``pip install`` of the README's requirements, each of ours from its wheel."""
        for spec in specs:
            assert Requirement(spec).name in self.wheels, f"the README installs {spec}, which is not ours"
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(python_in(self.venv)),
                        *iter_requirements(specs, self.wheels)], check=True, timeout=600)

    def check(self, argv: list[str], timeout: float = 120) -> str:
        """Run a command to completion in the quickstart's directory and environment; its output."""
        done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def serve(self, kind: str, argv: list[str], port: int, *, extra_env: dict[str, str] | None = None,
              ready: object = None) -> None:
        popen = subprocess.Popen(argv, cwd=self.cwd, env={**self.env, **(extra_env or {})}, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(popen)
        threading.Thread(target=process._pump, daemon=True).start()
        server = Server(kind, port, process)
        self.servers.append(server)
        probe = ready if callable(ready) else (lambda p: _answers(f"http://127.0.0.1:{p}/"))
        deadline = time.monotonic() + 90
        while not probe(port):
            if popen.poll() is not None:
                raise AssertionError(f"{shlex.join(argv)} exited {popen.returncode}:\n{process.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{shlex.join(argv)} did not answer within 90 s:\n{process.output}")
            time.sleep(0.1)

    def server(self, kind: str) -> Server:
        return next(s for s in self.servers if s.kind == kind)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.process.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def iter_requirements(installed: list[str], wheels: dict[str, Path]) -> Iterator[str]:
    """The README's requirements, each pointed at its wheel (third-party ones come from PyPI)."""
    for spec in installed:
        req = Requirement(spec)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        yield f"{req.name}{extras} @ {wheels[req.name].as_uri()}"
