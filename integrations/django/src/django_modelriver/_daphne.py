"""Daphne tuning (``MODELRIVER["TUNE_DAPHNE"]``, on by default).

Daphne speaks WebSocket through autobahn, whose ``sendData`` builds its debug-log arguments for
every frame sent, debug logging on or not, colouring them with ``click`` when it is installed:
four ``click.style`` calls a frame, about a quarter of the relay's cost per token. Turning the
colouring off (``autobahn.util._HAS_CLICK = False``) changes nothing else: autobahn's debug lines
lose their ANSI colours. Applied once, at app start; a missing autobahn is fine.
"""

from __future__ import annotations

import contextlib

__all__ = ["tune"]


def tune() -> None:
    """Stop autobahn's per-frame log colouring (see the module docstring)."""
    with contextlib.suppress(Exception):
        import autobahn.util

        if getattr(autobahn.util, "_HAS_CLICK", False):
            autobahn.util._HAS_CLICK = False
