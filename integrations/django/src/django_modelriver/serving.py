"""What serving the relay needs at run time, checked before it fails later: an ASGI runserver and
the sessions' table.

* ``sessions_ready()``: whether a session can be saved now (a database-backed session engine
  needs ``manage.py migrate``); the start view asks before it creates any upstream request.
* System checks (registered by the app): ``W005``/``E012`` when ``manage.py runserver`` is not
  Daphne's (Django's own runserver serves WSGI: pages load, then the socket 404s), and ``W006``
  (tagged ``database``: ``manage.py check --database default``, ``migrate``) when the sessions'
  table is missing.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections, router
from django.utils.module_loading import import_string

__all__ = ["check_runserver", "check_sessions_table", "runserver_provider", "sessions_ready"]

_DAPHNE_HINT = ("Put 'daphne' first in INSTALLED_APPS (before django.contrib.staticfiles), so "
                "`manage.py runserver` is Daphne's and serves the socket too.")


def _id(n: int, kind: str) -> str:
    return f"django_modelriver.{kind}{n:03d}"


def runserver_provider() -> str:
    """The app whose ``runserver`` command ``manage.py runserver`` runs (``daphne`` for ASGI)."""
    from django.core.management import get_commands

    return get_commands().get("runserver", "django.core")


def _running_runserver() -> bool:
    return sys.argv[1:2] == ["runserver"]


@register("modelriver")
def check_runserver(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``E012`` while ``runserver`` runs and is not Daphne's; ``W005`` for the same under DEBUG."""
    provider = runserver_provider()
    if provider == "daphne":
        return []
    message = (f"`manage.py runserver` is {provider}'s, which serves WSGI only: the pages load but "
               "the relay's WebSocket answers 404.")
    if _running_runserver():
        return [Error(message, hint=_DAPHNE_HINT, id=_id(12, "E"))]
    if settings.DEBUG:
        return [Warning(message, hint=_DAPHNE_HINT, id=_id(5, "W"))]
    return []


def _session_model() -> Any:
    """The model a database-backed session engine stores sessions in, or None for other engines."""
    from django.contrib.sessions.backends.db import SessionStore as DatabaseStore

    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    if isinstance(store, type) and issubclass(store, DatabaseStore):
        return store.get_model_class()
    return None


def sessions_ready(using: str | None = None) -> bool:
    """Whether a session can be saved now: True unless the engine's table is missing.

    A database-backed engine (``db``, ``cached_db`` or a subclass) needs its table, which
    ``manage.py migrate`` creates; other engines (signed cookies, cache, file) need nothing.
    This runs one introspection query: call it from sync code (``sync_to_async`` in a view).

    Args:
        using: the database alias; default: where the router writes sessions.
    """
    model = _session_model()
    if model is None:
        return True
    connection = connections[using or router.db_for_write(model)]
    try:
        with connection.cursor() as cursor:
            return model._meta.db_table in connection.introspection.table_names(cursor)
    except DatabaseError:
        return False


@register(Tags.database, "modelriver")
def check_sessions_table(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``W006`` when the sessions' table is missing (a warning: it must not stop ``migrate``)."""
    model = _session_model() if databases else None
    if model is None:
        return []
    alias = router.db_for_write(model)
    if alias not in databases or sessions_ready(alias):
        return []
    return [Warning(
        f"The session table {model._meta.db_table!r} does not exist in database {alias!r}: starting a "
        "request needs the session that owns it.",
        hint="Run `python manage.py migrate` (or use SESSION_ENGINE = "
             "'django.contrib.sessions.backends.signed_cookies').",
        id=_id(6, "W"))]
