"""Untrusted model text in ``ChatView``'s messages: code spans hold, images become links, HTML is text.

The oracle is markdown-it-py's CommonMark parser (what a Markdown renderer makes of a message).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gradio_modelriver import ChatView, markdown_card
from gradio_modelriver._view import code_span
from modelriver.events import Response, Status, Token, ToolCall
from modelriver.types import AIResponse

RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LEAK = "http://127.0.0.1:9/leak?d=secret"


def inline(markdown: str) -> list[Any]:
    tokens = RENDERER.parse(markdown)
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], markdown
    return list(tokens[1].children or [])


def kinds(markdown: str) -> set[str]:
    found: set[str] = set()

    def walk(tokens: list[Any]) -> None:
        for token in tokens:
            found.add(token.type)
            walk(token.children or [])

    walk(RENDERER.parse(markdown))
    return found


@given(st.text(alphabet=st.characters(blacklist_characters="\0\r"), min_size=1, max_size=30))
def test_a_code_span_holds_any_text(text: str) -> None:
    children = inline(f"Used tool {code_span(text)} now")
    assert [t.type for t in children] == ["text", "code_inline", "text"], children
    assert children[1].content == " ".join(text.splitlines()) or text.isspace()


def test_a_backtick_in_a_tool_name_does_not_break_out() -> None:
    name = f"look`up` :red[x] ![t]({LEAK}) ``"
    view = ChatView("demo-tools")
    view.apply(ToolCall(name=name, arguments={"q": f"![a]({LEAK})\n```\n<img src=x>"}))
    tool = next(m for m in view.messages() if "Used tool" in str(m.metadata.get("title")))
    children = inline(str(tool.metadata["title"]))
    assert [t.content for t in children if t.type == "code_inline"] == [name]
    assert "image" not in kinds(str(tool.metadata["title"]))
    assert kinds(str(tool.content)) == {"fence"}  # the arguments stay one code block


def test_the_answer_and_a_streamed_json_block_render_no_image_and_no_html() -> None:
    view = ChatView("demo-chat")
    view.apply(Token(f"Hi ![i]({LEAK}) <img src={LEAK}>"))
    answer = str(view.messages()[-1].content)
    assert not kinds(answer) & {"image", "html_inline", "html_block"}
    assert f"[i ({LEAK})]" in answer.replace("\\", "")

    structured = ChatView("demo-structured")
    structured.apply(Token('{"reply": "x", "note": "\n```\n![i](' + LEAK + ')'))
    block = next(m for m in structured.messages() if m.metadata.get("title") == "Structured output")
    assert kinds(str(block.content)) == {"fence"}


def test_allow_remote_media_keeps_images_but_never_html() -> None:
    view = ChatView("demo-chat", allow_remote_media=True)
    view.apply(Token(f"![i]({LEAK}) <img src={LEAK}>"))
    found = kinds(str(view.messages()[-1].content))
    assert "image" in found and not found & {"html_inline", "html_block"}


def test_a_failover_title_shows_provider_names_as_typed() -> None:
    view = ChatView("demo-failover")
    view.apply(Status("failover", payload={"from": "**a**", "to": f"![b]({LEAK})", "reason": "<b>x</b>"}))
    title = next(str(m.metadata["title"]) for m in view.messages()
                 if str(m.metadata.get("title", "")).startswith("Failover"))
    assert RENDERER.renderInline(title) == f"Failover: **a** → ![b]({LEAK})".replace("&", "&amp;")


def test_the_markdown_card_shows_model_fields_safely() -> None:
    data = {"summary": f"![s]({LEAK}) <script>x</script>", "topics": ["a`b", "<i>"],
            f"![k]({LEAK})": f"<img src={LEAK}>"}
    card = markdown_card(data)
    assert not kinds(card) & {"image", "html_inline", "html_block"}
    assert "`` a`b ``" in card or "``a`b``" in card
    view = ChatView("demo-structured", structured="markdown")
    view.apply(Response(AIResponse.from_payload({"status": "success", "content": "{}", "data": data})))
    assert not kinds(str(view.messages()[-1].content)) & {"image", "html_inline", "html_block"}
