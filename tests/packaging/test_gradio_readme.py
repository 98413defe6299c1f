"""gradio-modelriver's README in a fresh virtualenv from the wheels: `python app.py` serves the
quickstart's ChatInterface, and gradio_client's predict on its /chat endpoint gets the answer."""

from __future__ import annotations

from typing import Any

import pytest
from gradio_client import Client
from oracle import finished_answer
from readme_quickstart import PACKAGES, Quickstart, blocks

pytestmark = pytest.mark.timeout(900)

README = PACKAGES["gradio-modelriver"] / "README.md"
PROMPT = "Tell me about rivers"


@pytest.fixture(scope="module")
def app(quickstart: Quickstart) -> Quickstart:
    code = blocks(README, "Install", "Quickstart")
    assert [b.file for b in code if b.file] == [("app.py", False)]
    quickstart.run(code)
    return quickstart


def answer_of(result: Any) -> str:
    """The chat text in /chat's output: the message that is not a thought (no metadata title)."""
    messages = result if isinstance(result, list) else [result]
    texts = [m["content"] if isinstance(m, dict) else m for m in messages
             if not (isinstance(m, dict) and (m.get("metadata") or {}).get("title"))]
    assert len(texts) == 1, result
    return str(texts[0])


def test_predict_on_chat_gets_the_gateways_answer(app: Quickstart) -> None:
    client = Client(app.server("gradio").url, verbose=False)
    result = client.predict(PROMPT, api_name="/chat")
    entry, content = finished_answer(app, PROMPT)
    assert entry["status"] == "success" and entry["workflow"] == "demo-chat"
    assert answer_of(result) == content
