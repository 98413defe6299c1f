"""A private event loop on a daemon thread, so sync code can drive the async implementation.

A sync twin (``SyncRealmClient``, ``SyncRealmUpstream``) holds a ``Portal`` as ``_portal`` and its
async twin as ``_twin``; each of its blocking methods is one line, ``forward(AsyncX.method)``
(``forward_iter`` for async iterators), so signatures and docs are written once, on the async side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

__all__ = ["Portal", "forward", "forward_iter", "forward_property", "same_args"]

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")
S = TypeVar("S")
P = ParamSpec("P")


class Portal:
    """Runs coroutines on its own loop thread and waits for their results."""

    def __init__(self, name: str = "modelriver-portal") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def call(self, aw: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``aw`` on the portal's loop and return its result (or raise its error)."""

        async def run() -> T:
            return await aw

        coro: Coroutine[Any, Any, T] = run()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """Iterate ``items`` (made on the portal's loop) from sync code; closing early closes it."""
        try:
            while True:
                try:
                    item = self.call(anext(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self.call(aclose())

    def close_after(self, closing: Callable[[], Awaitable[object]], *, keep_open: bool = False) -> None:
        """Run ``closing()`` (the async twin's own close) on the loop, then ``close()`` unless
        ``keep_open`` (a borrowed portal). Idempotent."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.call(closing())
        if not keep_open:
            self.close()

    def close(self) -> None:
        """Stop the loop and join the thread. Idempotent."""
        if self._loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot close a portal from its own thread")

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()


def same_args(
    twin: Callable[P, object],
) -> Callable[[Callable[Concatenate[S, ...], None]], Callable[Concatenate[S, P], None]]:
    """``@same_args(AsyncX)`` on a sync twin's ``__init__(self, *args, **kwargs)``, which hands
    them on to ``AsyncX``: typed (and shown by ``inspect.signature``) with ``AsyncX``'s arguments."""

    def typed(init: Callable[Concatenate[S, ...], None]) -> Callable[Concatenate[S, P], None]:
        init.__wrapped__ = twin.__init__  # type: ignore[attr-defined]
        return init

    return typed


class _SyncTwin(Protocol):
    _portal: Portal
    _twin: Any


class _Forward(Generic[P, A, R]):
    """A method of a sync twin: the async twin's ``method``, its result run through the portal."""

    def __init__(self, method: Callable[Concatenate[Any, P], A]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    def _run(self, portal: Portal, value: A) -> R:
        raise NotImplementedError

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...

    @overload
    def __get__(self, obj: _SyncTwin, owner: type) -> Callable[P, R]: ...

    def __get__(self, obj: _SyncTwin | None, owner: type) -> Self | Callable[P, R]:
        if obj is None:
            return self
        method, run, portal, twin = self._method, self._run, obj._portal, obj._twin

        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return run(portal, method(twin, *args, **kwargs))

        return call


class forward(_Forward[P, Awaitable[T], T]):
    """``name = forward(AsyncX.name)``: blocks until the async twin's coroutine is done."""

    def _run(self, portal: Portal, value: Awaitable[T]) -> T:
        return portal.call(value)


class forward_iter(_Forward[P, AsyncIterator[T], Iterator[T]]):
    """``name = forward_iter(AsyncX.name)``: iterates the async twin's async iterator."""

    def _run(self, portal: Portal, value: AsyncIterator[T]) -> Iterator[T]:
        return portal.iterate(value)


class forward_property(Generic[T]):
    """``name = forward_property(AsyncX.name)``: the async twin's property, read as it stands."""

    def __init__(self, prop: Callable[[Any], T]) -> None:
        self.__doc__ = prop.__doc__
        self._name = getattr(prop, "__name__", "")

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...

    @overload
    def __get__(self, obj: _SyncTwin, owner: type) -> T: ...

    def __get__(self, obj: _SyncTwin | None, owner: type) -> Self | T:
        if obj is None:
            return self
        value: T = getattr(obj._twin, self._name)
        return value
