"""Named callbacks, as the SDK's ``on(event, fn)`` / ``off()``: shared by every client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

Callback: TypeAlias = Callable[[Any], Any]


class Emitter:
    """Callbacks by event name. A failing callback is logged, never raised into the caller.

    Args:
        names: the event names ``on()`` accepts.
        logger: where failing callbacks are reported.
    """

    def __init__(self, names: Iterable[str], logger: logging.Logger) -> None:
        self.names = tuple(names)
        self._logger = logger
        self._callbacks: dict[str, list[Callback]] = {}

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Register ``callback`` for ``event``; returns a function that unsubscribes it.

        Raises:
            ValueError: ``event`` is not one of ``names``.
        """
        if event not in self.names:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(self.names)}")
        self._callbacks.setdefault(event, []).append(callback)
        return lambda: self.off(event, callback)

    def off(self, event: str | None = None, callback: Callback | None = None) -> None:
        """Remove one callback, every callback of ``event``, or all of them."""
        if event is None:
            self._callbacks.clear()
        elif callback is None:
            self._callbacks.pop(event, None)
        else:
            with contextlib.suppress(ValueError):
                self._callbacks.get(event, []).remove(callback)

    def has(self, event: str) -> bool:
        """True when ``event`` has at least one callback."""
        return bool(self._callbacks.get(event))

    def fire(self, event: str, arg: Any) -> None:
        """Call every callback of ``event`` with ``arg``."""
        for callback in list(self._callbacks.get(event, ())):
            try:
                callback(arg)
            except Exception:
                self._logger.exception("%s callback failed", event)
