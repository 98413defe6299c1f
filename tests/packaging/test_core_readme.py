"""modelriver's README in a fresh virtualenv from the wheel: the install line, `modelriver dev`,
`modelriver stream`, the async and sync examples, the webhook handler and the Realm example."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from readme_quickstart import PACKAGES, Block, Quickstart, blocks, free_port, python_in

pytestmark = pytest.mark.timeout(600)

README = PACKAGES["modelriver"] / "README.md"


def example(containing: str) -> Block:
    found = [b for b in blocks(README, "Quickstart", "Webhooks", "Realm")
             if b.info == "python" and containing in b.code]
    assert len(found) == 1, f"one example with {containing!r} expected, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def core(quickstart: Quickstart) -> Quickstart:
    realm_port = free_port()
    # The Realm section's `modelriver dev --realm-port 8080`: the same gateway, Realm's port free too.
    quickstart.realm_port = realm_port  # type: ignore[attr-defined]
    code = blocks(README, "Install", "Quickstart")
    for block in code:
        if block.info == "bash":
            for line in block.code.splitlines():
                if line.startswith("modelriver dev"):
                    line = line.replace("modelriver dev", f"modelriver dev --realm-port {realm_port}", 1)
                quickstart.command(line)
    return quickstart


def run_python(run: Quickstart, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python_in(run.venv)), "-c", code], cwd=run.cwd, env=run.env,
                          capture_output=True, text=True, timeout=120)


def test_modelriver_stream_prints_the_answer(core: Quickstart) -> None:
    lines = [b.code for b in blocks(README, "Quickstart") if b.info == "bash"]
    assert any('modelriver stream "Tell me about rivers" --workflow demo-chat' in code for code in lines)
    out = core.check(["modelriver", "stream", "Tell me about rivers", "--workflow", "demo-chat"])
    assert out.strip()


@pytest.mark.parametrize("kind", ["AsyncModelRiver", "with ModelRiver()"])
def test_the_async_and_sync_examples_run(core: Quickstart, kind: str) -> None:
    done = run_python(core, example(kind).code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the example printed nothing"
    assert core.env["MODELRIVER_API_KEY"] not in done.stdout + done.stderr


def test_the_webhook_handler_accepts_a_signed_webhook_and_refuses_a_forged_one(core: Quickstart) -> None:
    check = textwrap.dedent("""
        from modelriver.webhooks import encode_body, signature_headers
        body = {"channel_id": "c1", "timestamp": 1, "data": {"reply": "hi"}}
        headers = signature_headers(body, "whsec_dev")
        assert handle_webhook(encode_body(body), headers) == 200
        forged = encode_body({**body, "data": {"reply": "changed"}})
        assert handle_webhook(forged, headers) == 401
        print("ok")
    """)
    done = run_python(core, example("verify_webhook").code + check)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_realm_example_streams_from_the_gateways_realm_port(core: Quickstart) -> None:
    code = example("RealmClient").code.replace("ws://127.0.0.1:8080", f"ws://127.0.0.1:{core.realm_port}")  # type: ignore[attr-defined]
    done = run_python(core, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
