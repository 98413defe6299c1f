"""The small HTML view of the request log served at ``/`` (no secrets in it), and its key form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from modelriver.devserver.config import WorkflowConfig

__all__ = ["render_key_form", "render_log"]

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f4f4f4}code{font-size:12px}
.success,.completed{color:#17733a}.error,.cancelled{color:#b3261e}.muted{color:#777}
"""


def _cell(value: Any) -> str:
    return "<span class=muted>-</span>" if value is None else escape(str(value))


def render_log(runs: Iterable[Any], workflows: Mapping[str, WorkflowConfig]) -> str:
    """The page: workflows served, then every request, newest first (refreshes every 2 s)."""
    rows = []
    for run in runs:
        log = run.to_log()
        failovers = ", ".join(f"{f['from']}→{f['to']}" for f in log["failovers"])
        hooks = ", ".join(str(w["status_code"] or w["error"]) for w in log["webhooks"])
        rows.append(
            "<tr>"
            f"<td><code>{_cell(log['channel_id'])}</code><br>{_cell(log['created_at'])}</td>"
            f"<td>{_cell(log['workflow'])}</td>"
            f"<td class='{escape(log['status'])}'>{_cell(log['status'])}"
            f"{'<br>' + _cell(log['error']) if log['error'] else ''}</td>"
            f"<td>{_cell(log['provider'])}<br><span class=muted>{_cell(log['model'])}</span></td>"
            f"<td>{_cell(log['tokens'])}</td><td>{_cell(log['first_token_ms'])}</td>"
            f"<td>{_cell(log['duration_ms'])}</td><td>{_cell(failovers or None)}</td>"
            f"<td>{_cell(hooks or None)}</td><td>{_cell(log['sockets'])} / {_cell(log['joins'])}</td>"
            f"<td>{_cell(log['prompt'])}</td>"
            "</tr>"
        )
    items = "".join(
        f"<li><code>{escape(w.name)}</code> {escape(w.description)}</li>" for w in workflows.values()
    )
    body = "".join(rows) or "<tr><td colspan=11 class=muted>No requests yet.</td></tr>"
    return (
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=2>"
        f"<title>modelriver dev</title><style>{_STYLE}</style></head><body>"
        "<h1>modelriver dev</h1><h2>Workflows</h2>"
        f"<ul>{items}</ul><h2>Requests</h2><table><tr><th>channel</th><th>workflow</th>"
        "<th>status</th><th>provider</th><th>tokens</th><th>first token ms</th><th>duration ms</th>"
        "<th>failovers</th><th>webhooks</th><th>sockets / joins</th><th>prompt</th></tr>"
        f"{body}</table></body></html>"
    )


def render_key_form(*, wrong: bool = False) -> str:
    """The page asking for the API key (posted to ``/``, which sets the log's cookie)."""
    note = "<p class=error>That is not this gateway's API key.</p>" if wrong else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>modelriver dev</title><style>{_STYLE}</style></head><body>"
        "<h1>modelriver dev</h1><p>The request log needs this gateway's API key "
        "(<code>--api-key</code> / <code>MODELRIVER_API_KEY</code>).</p>"
        f"{note}<form method=post action='/'><input type=password name=key autocomplete=off "
        "aria-label='API key' placeholder='API key' required> <button>Show the log</button></form>"
        "</body></html>"
    )
