"""``modelriver.markdown``: model Markdown that renders no image and no raw HTML, whatever it is.

The oracle is markdown-it-py's full CommonMark parser (HTML on, tables, strikethrough): what a
renderer would make of the output.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from modelriver.markdown import SafeMarkdown, escape_markdown, safe_markdown

RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LEAK = "http://127.0.0.1:9/leak?d=secret"


def kinds(text: str) -> set[str]:
    """Every token type a renderer would produce for ``text`` (inline ones included)."""
    found: set[str] = set()

    def walk(tokens: list[Any]) -> None:
        for token in tokens:
            found.add(token.type)
            walk(token.children or [])

    walk(RENDERER.parse(text))
    return found


def rendered(text: str) -> str:
    return RENDERER.render(text)


def assert_inert(text: str, *, images_too: bool = True) -> None:
    found = kinds(text)
    assert not found & {"html_inline", "html_block"}, (text, found)
    if images_too:
        assert "image" not in found, (text, found)


# Pieces hypothesis combines: Markdown structure, images, HTML, code, escapes.
PIECES = st.sampled_from([
    "![i](http://h/?d=1)", "![", "](", ")", "[", "]", "!", "<", ">", "<img src=x>", "<script>",
    "</b>", "<!--", "-->", "<?", "<![CDATA[", "`", "``", "```", "~~~", "\n", "\n\n", "    ", "> ",
    "- ", "1. ", "# ", "| a | b |\n|---|---|\n", "|", "\\", "*", "_", "[r]: http://r/\n", "![x][r]",
    "<http://auto.link>", "&#33;", "&lt;", "\t", " ", "text", ":red[x]", "$x$", "\r\n", "\0",
])
MARKDOWN = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(MARKDOWN)
def test_no_image_and_no_html_survive_any_input(text: str) -> None:
    out = safe_markdown(text)
    assert_inert(out)
    assert safe_markdown(out) == out  # a fixpoint: rewriting twice changes nothing


@settings(max_examples=200, deadline=None)
@given(MARKDOWN)
def test_allow_remote_media_still_escapes_html(text: str) -> None:
    assert_inert(safe_markdown(text, allow_remote_media=True), images_too=False)


@settings(max_examples=150, deadline=None)
@given(MARKDOWN)
def test_a_growing_text_is_rewritten_as_a_whole(text: str) -> None:
    stream = SafeMarkdown()
    for end in range(0, len(text) + 1, max(1, len(text) // 12)):
        assert_inert(stream(text[:end]))
    assert stream(text, final=True) == safe_markdown(text)


def test_a_long_growing_paragraph_is_rewritten_a_logarithmic_number_of_times() -> None:
    stream = SafeMarkdown()
    text = ""
    shown = set()
    for index in range(1500):  # one paragraph, a candidate in every token: the costly case
        text += f"w{index} <b> "
        shown.add(stream(text))
    assert len(shown) < 70  # rewritten when it grew by an eighth, not on each of 1,500 tokens
    for out in shown:
        assert_inert(out)
        assert text.startswith(out.replace("\\<", "<"))  # the rewrite of a prefix
    assert stream(text, final=True) == safe_markdown(text)


@given(st.text(max_size=40))
def test_escaped_text_renders_as_itself(text: str) -> None:
    text = " ".join(text.split())  # one line, no edge blanks: as a label shows it
    if not text or text[0].isdigit() or text[0] in "#>-+=":
        text = "x " + text  # a paragraph (not a list item, heading or quote)
    html = rendered(escape_markdown(text))
    assert kinds(escape_markdown(text)) <= {"paragraph_open", "paragraph_close", "inline", "text",
                                            "text_special", "softbreak"}
    assert html.startswith("<p>"), html


def test_an_image_becomes_a_link_showing_alt_and_url() -> None:
    out = safe_markdown(f"Look: ![the chart]({LEAK}) done")
    assert "<img" not in rendered(out)
    assert f'<a href="{LEAK.replace("&", "&amp;")}">the chart ({LEAK})</a>' in rendered(out)
    assert out.startswith("Look: [") and out.endswith(") done")


def test_an_image_without_alt_shows_its_url() -> None:
    assert f'<a href="{LEAK}">{LEAK}</a>' in rendered(safe_markdown(f"![]({LEAK})"))


@pytest.mark.parametrize("source", [
    f"![i][r]\n\n[r]: {LEAK}",  # by reference
    f"[![i]({LEAK})](http://x/)",  # inside a link
    f"!![i]({LEAK})",  # "!" right before
    f"> - quoted list ![i]({LEAK})",
    f"| a |\n|---|\n| ![i]({LEAK}) |",
    f"# heading ![i]({LEAK}) #",
    f"![i](<{LEAK}>)",
    f'![i]({LEAK} "title")',
])
def test_images_in_every_context_become_links(source: str) -> None:
    out = safe_markdown(source)
    assert_inert(out)
    assert LEAK.replace("&", "&amp;") in rendered(out)  # still there, as a link


@pytest.mark.parametrize(("source", "shown"), [
    (f"<img src={LEAK}>", f"&lt;img src={LEAK}&gt;"),
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("a <b>bold</b> c", "a &lt;b&gt;bold&lt;/b&gt; c"),
    ("<div>\n<img src=x>\n</div>", "&lt;div&gt;\n&lt;img src=x&gt;\n&lt;/div&gt;"),
    ("<!-- hidden -->", "&lt;!-- hidden --&gt;"),
    ("x < y and Vec<T>", "x &lt; y and Vec&lt;T&gt;"),
])
def test_raw_html_shows_as_text(source: str, shown: str) -> None:
    out = safe_markdown(source, allow_remote_media=True)
    assert_inert(out)
    assert shown in rendered(out)


@pytest.mark.parametrize("source", [
    "plain **bold** _em_ ~~gone~~ [link](http://x/) <http://auto/> :red[x] $x^2$",
    "```html\n<img src=x>\n![i](http://h/)\n```",
    "    <b>indented code</b> ![i](http://h/)",
    "inline `<img src=x>` and `![i](http://h/)` code",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "- one\n- two\n\n1. three",
])
def test_what_renders_nothing_is_kept_byte_for_byte(source: str) -> None:
    assert safe_markdown(source) == source


def test_links_stay_links() -> None:
    out = safe_markdown("[docs](https://example.com/a_(b)) and ![i](http://h/)")
    assert '<a href="https://example.com/a_(b)">docs</a>' in rendered(out)


def test_streaming_reuses_finished_blocks() -> None:
    stream = SafeMarkdown()
    first = "Para one ![i](http://h/1).\n\n"
    assert stream(first + "Para two <b>") == safe_markdown(first + "Para two <b>")
    kept = stream._source
    assert kept == first  # the finished paragraph is not rewritten again
    assert stream(first + "Para two <b>x</b> and more") == safe_markdown(first + "Para two <b>x</b> and more")
    assert stream("Something else ![j](http://h/2)") == safe_markdown("Something else ![j](http://h/2)")
