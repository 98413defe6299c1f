"""Untrusted text in what ``_render`` hands Streamlit: labels and step lines show it as typed.

The oracle is markdown-it-py's CommonMark parser: an escaped text is one paragraph of plain text
(Streamlit's own directives, ``:red[...]``, ``:material/...:``, need their ``:`` and ``[``
unescaped; the browser test shows Streamlit agrees).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from modelriver import AIResponse, WorkflowStep
from streamlit_modelriver._render import STEP_ICONS, answer_markdown, final_label, steps_markdown

RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LEAK = "http://127.0.0.1:9/leak?d=secret"
HOSTILE = f":red[x] **b** [l]({LEAK}) ![i]({LEAK}) <img src={LEAK}> :material/cancel: $x$ `c`"
PLAIN = {"paragraph_open", "paragraph_close", "inline", "text", "text_special", "softbreak", "hardbreak"}


def kinds(markdown: str) -> set[str]:
    found: set[str] = set()

    def walk(tokens: list[Any]) -> None:
        for token in tokens:
            found.add(token.type)
            walk(token.children or [])

    walk(RENDERER.parse(markdown))
    return found


def shown(markdown: str) -> str:
    """The text a renderer shows for ``markdown`` (tags dropped)."""
    tokens = RENDERER.parseInline(markdown)
    return "".join(t.content for t in tokens[0].children or [] if t.type in ("text", "text_special"))


def error(message: str) -> AIResponse:
    return AIResponse(status="error", channel_id="c", error={"message": message},
                      raw={"status": "error", "channel_id": "c", "error": {"message": message}})


def test_step_lines_show_names_errors_and_notes_as_typed() -> None:
    steps = [WorkflowStep("process", HOSTILE, "error", 12, HOSTILE)]
    notes = [f"Tool call: look`up` {HOSTILE}({{}})", f"Failover: a → b ({HOSTILE})"]
    markdown = steps_markdown(steps, notes)
    icon_free = markdown
    for icon in (*STEP_ICONS.values(), ":gray[:material/subdirectory_arrow_right:]"):
        icon_free = icon_free.replace(icon, "")
    assert kinds(icon_free) <= PLAIN
    lines = [shown(line).strip() for line in icon_free.split("  \n")]
    assert lines == [f"{HOSTILE} · 12 ms · {HOSTILE}", *notes]


@given(st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=40))
def test_a_failed_label_shows_any_error_as_typed(message: str) -> None:
    label = final_label(error(message))
    assert kinds(label) <= PLAIN | {"paragraph_open"}
    assert " ".join(shown(label).split()) == " ".join(f"Failed: {message}".split())


def test_the_answer_keeps_markdown_but_loads_nothing() -> None:
    answer = answer_markdown(f"**Hi** ![i]({LEAK})\n\n<img src={LEAK}>")
    found = kinds(answer)
    assert "strong_open" in found and "link_open" in found
    assert not found & {"image", "html_inline", "html_block"}
    assert "image" in kinds(answer_markdown(f"![i]({LEAK})", allow_remote_media=True))
