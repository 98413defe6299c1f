"""A private event loop on a daemon thread, so sync code can drive the async implementation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
