"""django-modelriver's README, followed from `pip install` and `django-admin startproject` to a
streamed answer, in a fresh virtualenv holding only the wheels (and their PyPI dependencies)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest
from readme_quickstart import PACKAGES, Quickstart, blocks, python_in

pytestmark = pytest.mark.timeout(900)  # a fresh venv from PyPI, then two servers and two streams

README = PACKAGES["django-modelriver"] / "README.md"
PROMPT = "Tell me about rivers"

# Run in the quickstart's venv: what the README's page does in a browser, with core's client for the
# socket (the relay checks the Origin, and the token is bound to the session cookie).
CLIENT = """
import json, sys
import httpx
from modelriver.stream import connect_sync
from modelriver.types import AsyncRequest

url, prompt = sys.argv[1], sys.argv[2]
with httpx.Client(base_url=url, timeout=30) as http:
    page = http.get("/")
    page.raise_for_status()
    started = http.post("/modelriver/start", json={"message": prompt},
                        headers={"X-CSRFToken": http.cookies["csrftoken"], "Referer": url + "/"})
    started.raise_for_status()
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
request = AsyncRequest.from_payload(started.json())
with connect_sync(request, origin=url, headers={"Cookie": cookie}, request_timeout=60) as stream:
    response = stream.wait()
    print(json.dumps({"page": page.text, "channel_id": request.channel_id, "status": response.status,
                      "text": stream.text, "where": __import__("modelriver").__file__}))
"""


@pytest.fixture(scope="module")
def project(quickstart: Quickstart) -> Quickstart:
    quickstart.run(blocks(README, "Install", "Quickstart"))
    return quickstart


def gateway_log(run: Quickstart, channel_id: str) -> dict[str, Any]:
    gateway = run.server("gateway")
    req = urllib.request.Request(f"{gateway.url}/v1/requests/{channel_id}",
                                 headers={"Authorization": f"Bearer {run.env['MODELRIVER_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def test_the_quickstart_names_every_step() -> None:
    code = [b for b in blocks(README, "Install", "Quickstart")]
    files = {b.file[0] for b in code if b.file}
    assert files == {"mysite/settings.py", "mysite/urls.py", "mysite/asgi.py", "chat/views.py",
                     "chat/templates/chat/index.html"}
    commands = "\n".join(b.code for b in code if b.info == "bash")
    for step in ("pip install django-modelriver 'modelriver[gateway]'", "django-admin startproject mysite",
                 "python manage.py migrate", "modelriver dev", "python manage.py runserver",
                 "daphne mysite.asgi:application"):
        assert step in commands


def test_the_project_passes_manage_py_check(project: Quickstart) -> None:
    out = project.check([str(python_in(project.venv)), "manage.py", "check", "--fail-level", "WARNING"])
    assert "no issues" in out


@pytest.mark.parametrize("server", ["runserver", "daphne"])
def test_a_fresh_project_streams_an_answer_through_the_relay(project: Quickstart, server: str) -> None:
    url = project.server(server).url
    done = subprocess.run([str(python_in(project.venv)), "-c", CLIENT, url, PROMPT], cwd=project.cwd,
                          env=project.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + "\n" + project.server(server).process.output
    answer = json.loads(done.stdout)
    assert answer["where"].startswith(str(project.venv)), answer["where"]  # the wheel, not the repo
    assert "data-modelriver-chat" in answer["page"]  # the template's widget
    assert answer["status"] == "success" and answer["text"]
    log = gateway_log(project, answer["channel_id"])
    assert log["status"] == "success" and log["content_length"] == len(answer["text"])
    assert log["prompt"] == PROMPT and log["workflow"] == "demo-chat"
