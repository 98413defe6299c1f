"""The browser module (``core/src/modelriver/browser/modelriver-link.js``), written once.

Its unit tests run in Node against literal Phoenix frames (tests/node/browser_module.test.mjs);
its request state folds the same events as core's ``RequestState`` to the same text, steps, notes
and result; and the paths the Django and Streamlit packages ship it at are committed links to it
(``scripts/sync_browser.py``, ``make browser``; the built wheels and sdists hold its bytes:
``tests/packaging/test_wheels.py``).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from modelriver.events import event_from_message
from modelriver.state import Failover, RequestState
from support import NODE_DIR, ROOT


def _sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_browser", ROOT / "scripts" / "sync_browser.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sync_browser", module)
    spec.loader.exec_module(module)
    return module


sync_browser = _sync_script()


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("these tests need Node.js (`node` on PATH)")
    return node


# -- the shipped paths: links to the source ------------------------------------------------------

@pytest.mark.parametrize("shipped", sync_browser.SHIPPED, ids=str)
def test_each_shipped_path_is_a_committed_relative_link_to_the_source(shipped: Path) -> None:
    path = ROOT / shipped
    assert path.is_symlink(), f"{shipped} is not a link to {sync_browser.SOURCE}: run `make browser`"
    assert not Path(os.readlink(path)).is_absolute()  # a checkout anywhere resolves it
    assert path.resolve() == (ROOT / sync_browser.SOURCE).resolve()
    assert path.read_bytes() == (ROOT / sync_browser.SOURCE).read_bytes()
    tracked = subprocess.run(["git", "ls-files", "--stage", "--", str(shipped)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert tracked.startswith("120000 "), f"git holds {shipped} as {tracked or 'nothing'}, not as a link"


def test_the_sync_script_finds_and_repairs_a_copy_or_a_missing_link(tmp_path: Path) -> None:
    (tmp_path / sync_browser.SOURCE).parent.mkdir(parents=True)
    shutil.copyfile(ROOT / sync_browser.SOURCE, tmp_path / sync_browser.SOURCE)
    for shipped in sync_browser.SHIPPED:
        (tmp_path / shipped).parent.mkdir(parents=True)
    copy, missing = (tmp_path / shipped for shipped in sync_browser.SHIPPED)
    shutil.copyfile(ROOT / sync_browser.SOURCE, copy)  # the bytes alone are not enough: it must be the link
    assert sync_browser.drifted(tmp_path) == list(sync_browser.SHIPPED)
    assert sync_browser.sync(tmp_path) == list(sync_browser.SHIPPED)
    assert sync_browser.drifted(tmp_path) == []
    with (tmp_path / sync_browser.SOURCE).open("a") as source:
        source.write("// an edit to the source\n")
    assert copy.read_bytes() == missing.read_bytes() == (tmp_path / sync_browser.SOURCE).read_bytes()
    missing.unlink()
    missing.symlink_to(tmp_path / sync_browser.SOURCE)  # absolute: breaks when the checkout moves
    assert sync_browser.drifted(tmp_path) == [sync_browser.SHIPPED[1]]


@pytest.mark.parametrize(("source", "copy"), sync_browser.VENDORED, ids=lambda p: p.name)
def test_each_vendored_library_is_the_pinned_build(source: Path, copy: Path) -> None:
    built = ROOT / sync_browser.NODE_MODULES / source
    assert built.is_file(), f"{built} missing: run `npm ci` in tests/node"
    package = json.loads((built.parents[len(source.parts) - 2] / "package.json").read_text())
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"][package["name"]]
    assert package["version"] == pinned  # the build is the exact version package.json pins
    assert (ROOT / copy).read_bytes() == sync_browser.vendored_bytes(built), f"{copy} drifted: run `make browser`"
    assert b"sourceMappingURL" not in (ROOT / copy).read_bytes()[-300:]


def test_the_packages_load_the_module_rather_than_their_own_protocol_code() -> None:
    django_js = (ROOT / sync_browser.SHIPPED[0]).with_name("modelriver.js").read_text()
    streamlit_js = (ROOT / sync_browser.SHIPPED[1]).with_name("stream.js").read_text()
    for text in (django_js, streamlit_js):  # no Phoenix link, backoff or terminal rules of their own
        for protocol in ('"phx_join"', '"phx_reply"', '"phoenix"', "new WebSocket", "vsn=", "10, 50, 100",
                         '"SUCCESS"', '"active_request"'):
            assert protocol not in text, protocol


# -- the module's own tests (Node, literal frames) -----------------------------------------------

@pytest.mark.node
@pytest.mark.timeout(120)
def test_the_browser_module_unit_tests_pass_in_node() -> None:
    proc = subprocess.run([_node(), "--test", "browser_module.test.mjs"], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout


# -- the same rules as core's RequestState -------------------------------------------------------

JOINED: list[Any] = ["__joined__", None]
CASES: dict[str, list[list[Any]]] = {
    "plain success": [JOINED, ["status", {"seq": 1, "status": "started"}], ["tokens", {"seq": 2, "data": "Hel"}],
                      ["tokens", {"seq": 3, "data": "lo"}],
                      ["response", {"seq": 4, "status": "success", "content": "Hello", "meta": {"duration_ms": 12}}]],
    "failover reset": [JOINED, ["tokens", {"seq": 1, "data": "lost"}],
                       ["status", {"seq": 2, "status": "failover", "from": "a", "to": "b", "reason": "429",
                                   "reset": True}],
                       ["tokens", {"seq": 3, "data": "kept"}], ["response", {"seq": 4, "status": "SUCCESS"}]],
    "failover keeps": [["tokens", {"seq": 1, "data": "kept "}],
                       ["status", {"seq": 2, "status": "failover", "from": "a", "to": "", "reset": False}],
                       ["tokens", {"data": "more"}]],
    "event-driven completed": [JOINED, ["response", {"status": "ai_generated", "meta": {"duration_ms": 7.9}}],
                               ["response", {"status": "completed", "data": {"x": 1}}]],
    "event-driven success": [JOINED, ["response", {"status": "ai_generated"}], ["response", {"status": "ok"}]],
    "meta success": [["response", {"status": "weird", "meta": {"status": "success"}}]],
    "unknown status": [["tokens", {"data": "x"}], ["response", {"status": "weird"}], ["tokens", {"data": "late"}]],
    "error response": [["response", {"status": "error", "error": "bad key"}]],
    "error response message": [["response", {"status": "error", "message": "no"}]],
    "error event": [JOINED, ["tokens", {"data": "part"}], ["error", {"seq": 9, "message": "provider down"}]],
    "error event object": [["error", {"error": {"message": "nested"}}]],
    "error event empty": [["error", {}]],
    "tool call": [["tool_call", {"seq": 1, "name": "lookup", "arguments": {"q": "x"}}], ["tool_call", {}]],
    "malformed tokens": [["tokens", {"data": 5}]],
    "malformed status": [["status", None]],
    "unknown events": [["heartbeat", {}], ["phx_whatever", None], ["tokens", {"data": ""}]],
    "empty deltas": [["tokens", {"data": ""}], ["tokens", {"data": ""}], ["tokens", {"data": "a"}]],
    "fail mid-stream": [JOINED, ["tokens", {"data": "so far"}], ["__fail__", "socket lost"]],
    "fail after ai_generated": [JOINED, ["response", {"status": "ai_generated"}], ["__fail__", "gone"]],
    "fail after the end": [["response", {"status": "success"}], ["__fail__", "late"]],
    "tokens around statuses": [JOINED, ["tokens", {"data": "a"}], ["status", {"status": "streaming"}],
                               ["tokens", {"data": "b"}], ["status", {"status": "queued"}], ["tokens", {"data": "c"}]],
    "empty first token": [JOINED, ["tokens", {"data": ""}], ["tokens", {"data": "x"}]],
    "tokens after ai_generated": [JOINED, ["tokens", {"data": "a"}], ["response", {"status": "ai_generated"}],
                                  ["tokens", {"data": "b"}], ["response", {"status": "completed"}],
                                  ["tokens", {"data": "late"}]],
    "structured status": [["status", {"status": "started", "structured": True, "prose": "reply"}],
                          ["tokens", {"data": '{"reply": "hi'}]],
}

# Structured answers: the partial object and the prose after every event. The documents are cut
# at awkward places: inside escapes, a \\u escape, a number, a literal, a key, between a key and
# its colon.
STRUCTURED_DOC = {"summary": "Rivers \"flow\" \\ downhill ✓ 😀", "reply": "You said: \"rivers\"\n\n- one\n- two",
                  "sentiment": "positive", "confidence": 0.875, "count": -12, "ok": True, "none": None,
                  "topics": ["water", "é"], "action_items": [{"task": "read", "done": False}, {"task": "swim"}]}


def _tokens(text: str, sizes: tuple[int, ...] = (1, 3, 2, 7, 5)) -> list[list[Any]]:
    out, at, i = [], 0, 0
    while at < len(text):
        size = sizes[i % len(sizes)]
        out.append(["tokens", {"data": text[at:at + size]}])
        at, i = at + size, i + 1
    return out


_ASCII = json.dumps(STRUCTURED_DOC)
_UNICODE = json.dumps(STRUCTURED_DOC, ensure_ascii=False)
_STARTED = ["status", {"seq": 1, "status": "started", "structured": True, "prose": "reply"}]
STRUCTURED_CASES: dict[str, list[list[Any]]] = {
    "announced prose, ascii escapes": [JOINED, _STARTED, *_tokens(_ASCII),
                                       ["response", {"status": "success", "data": STRUCTURED_DOC}]],
    "announced prose, unicode": [JOINED, _STARTED, *_tokens(_UNICODE, (4, 1, 9)),
                                 ["response", {"status": "success", "data": STRUCTURED_DOC}]],
    "no prose field": [JOINED, ["status", {"status": "queued", "structured": True, "prose": None}],
                       *_tokens(_ASCII, (11,))],
    "prose from the object": [["status", {"status": "started", "structured": True}], *_tokens(_UNICODE, (6,))],
    "completed with the AI's data": [_STARTED, *_tokens('{"reply": "a"}'),
                                     ["response", {"status": "ai_generated", "data": {"reply": "a"}}],
                                     ["response", {"status": "completed", "data": {"backend": 1},
                                                   "ai_response": {"data": {"reply": "a"}}}]],
    "failover reset": [_STARTED, *_tokens('{"reply": "lost'),
                       ["status", {"status": "failover", "from": "a", "to": "b", "reset": True}],
                       *_tokens('{"reply": "kept"}', (4,))],
    "failover continues": [_STARTED, *_tokens('{"reply": "kept ', (5,)),
                           ["status", {"status": "failover", "from": "a", "to": "b", "reset": False,
                                       "continued_from": 3}],
                           *_tokens('and more", "topics": ["x"]}', (5,))],
    "not json": [_STARTED, ["tokens", {"data": "Sorry, "}], ["tokens", {"data": "plain text"}]],
    "error after a partial": [_STARTED, *_tokens('{"reply": "so far'), ["error", {"message": "down"}]],
    "text answer": [["status", {"status": "started"}], *_tokens('{"reply": "x"}')],
}


def _fold_in_python(events: list[list[Any]]) -> dict[str, Any]:
    state = RequestState("chan")
    trace = []
    for name, payload in events:
        if name == "__joined__":
            state.joined()
        elif name == "__fail__":
            state.fail(payload)
        elif (event := event_from_message(name, payload)) is not None:
            state.feed(event)
        trace.append([state.partial, state.prose])
    notes = [["failover", n.from_provider, n.to_provider, n.reason, n.reset, n.seq] if isinstance(n, Failover)
             else ["tool_call", n.name, n.arguments, n.seq] for n in state.notes]
    return {
        "text": state.text, "status": state.status, "attempt": state.attempt,
        "steps": [[s.id, s.name, s.status, s.duration, s.error_message] for s in state.steps],
        "notes": notes, "done": state.done,
        "result": state.result.status if state.result else None, "error": state.error,
        "intermediate": state.intermediate.status if state.intermediate else None,
        "structured": state.structured, "trace": trace,
    }


def _fold_in_node(cases: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
    proc = subprocess.run([_node(), "request_state_fold.mjs", json.dumps(list(cases.values()))], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    folded: list[dict[str, Any]] = json.loads(proc.stdout)
    return folded


@pytest.mark.node
def test_the_browser_request_state_folds_events_as_cores_does() -> None:
    for (name, events), folded in zip(CASES.items(), _fold_in_node(CASES), strict=True):
        assert folded == _fold_in_python(events), name


@pytest.mark.node
def test_the_browser_partial_object_and_prose_are_cores_after_every_event() -> None:
    for (name, events), folded in zip(STRUCTURED_CASES.items(), _fold_in_node(STRUCTURED_CASES), strict=True):
        assert folded == _fold_in_python(events), name
    # the sequences show what they are meant to: prose grows while the reply streams, then the data
    announced = _fold_in_python(STRUCTURED_CASES["announced prose, unicode"])["trace"]
    proses = [prose for _, prose in announced]
    assert len(set(proses)) >= 8 and proses[-1] == STRUCTURED_DOC["reply"]
    assert all(b.startswith(a) for a, b in itertools.pairwise(proses))
    assert announced[-1][0] == STRUCTURED_DOC and not any("{" in p for p in proses)
    assert {p for _, p in _fold_in_python(STRUCTURED_CASES["no prose field"])["trace"]} == {""}
