"""``freeze_startup_objects()``: keep Streamlit's end-of-run garbage collection from delaying the page.

Streamlit ends every script run with ``gc.collect(2)`` (``runner.postScriptGC``, on by default),
on the script thread and holding the GIL. In a process that imported Streamlit, pandas and the
app, that full collection walks ~120k long-lived objects: 70-200 ms (measured by
``benchmarks/streamlit_ttft.py``), during which the server's event loop cannot send the run's
last deltas. A component mounted at the end of a run (``st_modelriver``'s, which opens the
answer's socket) reaches the browser only after it: the first token shows that much later.

``gc.freeze()`` moves the objects alive at that moment into a permanent generation that
collections skip: a full collection then takes ~2 ms. Frozen objects are still freed by
reference counting; only reference cycles among them are never collected, which for modules,
classes and caches created at import is what happens anyway. The app calls it (after its
imports): it changes the whole process's collection, so ``st_modelriver`` never does.
"""

from __future__ import annotations

import gc
import logging
import threading

__all__ = ["freeze_startup_objects"]

logger = logging.getLogger("streamlit_modelriver")

_lock = threading.Lock()
_frozen = False


def freeze_startup_objects() -> bool:
    """Exempt the objects alive now (the imports) from every later full collection; once a process.

    Call it at the top of the app, after its imports (every rerun may call it: only the first
    call freezes). The alternative is ``runner.postScriptGC = false`` in ``.streamlit/config.toml``,
    which drops the end-of-run collection itself (Python's own collections still walk everything).

    Returns:
        True on the call that froze, False afterwards.
    """
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.freeze()
        _frozen = True
    logger.debug("froze %d objects out of the garbage collector's full passes", gc.get_freeze_count())
    return True
