"""Settings (one lazy MODELRIVER dict, env defaults, reset on setting_changed), system checks,
and the socket tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core import signing
from django.test import override_settings

from django_modelriver import tokens
from django_modelriver.checks import check_settings
from django_modelriver.conf import modelriver_settings
from support import free_port


def ids(**modelriver: Any) -> set[str]:
    with override_settings(MODELRIVER=modelriver):
        return {m.id for m in check_settings()}


def test_settings_default_from_core_env_and_reset_on_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELRIVER_API_KEY", "mr_env_key_0123456789abcdef")
    monkeypatch.setenv("MODELRIVER_API_BASE", "http://env.example:1234/")
    monkeypatch.setenv("MODELRIVER_WEBHOOK_SECRET", "whsec_env")
    with override_settings(MODELRIVER={}):
        conf = modelriver_settings()
        assert conf.api_key == "mr_env_key_0123456789abcdef"
        assert conf.api_base == "http://env.example:1234"
        assert conf.webhook_secret == "whsec_env"
        assert conf.token_lifetime == 300 and conf.replay_buffer_size == 10_000
        assert "mr_env_key" not in repr(conf)
        assert modelriver_settings() is conf  # cached
    with override_settings(MODELRIVER={"API_KEY": "mr_explicit_0123456789ab", "TOKEN_LIFETIME": 60,
                                       "WORKFLOWS": {"w": {"events": ["webhook_received"]}}}):
        conf = modelriver_settings()
        assert conf.api_key == "mr_explicit_0123456789ab" and conf.token_lifetime == 60
        assert conf.workflow_options("w") is not None and conf.workflow_options("w").events == ("webhook_received",)
        assert conf.workflow_options("other") is None


def test_system_checks_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELRIVER_API_KEY", raising=False)
    monkeypatch.delenv("MODELRIVER_WEBHOOK_SECRET", raising=False)
    with override_settings(MODELRIVER="nope"):
        assert {m.id for m in check_settings()} == {"django_modelriver.E001"}
    assert ids(API_KEY="k" * 20, WEBHOOK_SECRET="s") == set()
    assert "django_modelriver.W001" in ids(WEBHOOK_SECRET="s")
    assert "django_modelriver.W002" in ids(API_KEY="k" * 20)
    assert "django_modelriver.E002" in ids(REPLAY_BUFFER_SIZE=0)
    assert "django_modelriver.E002" in ids(TOKEN_LIFETIME="long")
    assert "django_modelriver.E003" in ids(API_BASE="ftp://x")
    assert "django_modelriver.E004" in ids(PERMISSION="no.such.callable")
    assert "django_modelriver.E005" in ids(REDIS_URL="redis://127.0.0.1:1/0")
    assert "django_modelriver.E007" in ids(WORKFLOWS={"a": {}}, DEFAULT_WORKFLOW="b")
    assert "django_modelriver.E007" in ids(WORKFLOWS="a")
    unknown = ids(TOKEN_LIFTIME=5)
    assert "django_modelriver.W003" in unknown
    with override_settings(MIDDLEWARE=[]):
        assert "django_modelriver.E006" in {m.id for m in check_settings()}


def test_tokens_bind_channel_and_owner_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    token = tokens.issue_token("chan", "owner-1")
    claims = tokens.verify_token(token, max_age=300)
    assert claims is not None and (claims.channel_id, claims.owner) == ("chan", "owner-1")
    assert tokens.issue_token("chan", "owner-1") != token  # a fresh jti each time
    assert tokens.verify_token(token[:-2] + "xx", max_age=300) is None
    assert tokens.verify_token(None, max_age=300) is None
    assert tokens.verify_token("x" * 5000, max_age=300) is None
    other_salt = signing.dumps({"c": "chan", "o": "owner-1", "j": "j"}, salt="another")
    assert tokens.verify_token(other_salt, max_age=300) is None
    monkeypatch.setattr(signing.TimestampSigner, "timestamp",
                        lambda self: signing.b62_encode(int(time.time()) - 100))
    old = tokens.issue_token("chan", "owner-1")
    monkeypatch.undo()
    assert tokens.verify_token(old, max_age=300) is not None
    assert tokens.verify_token(old, max_age=60) is None


# -- serving: an ASGI runserver and the sessions' table (real `manage.py` processes) -------------

SITE_SETTINGS = """
SECRET_KEY = "site-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = {apps!r}
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
SESSION_ENGINE = {engine!r}
ROOT_URLCONF = "site_urls"
{asgi}
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
STATIC_URL = "/static/"
MODELRIVER = {{"API_KEY": "mr_site_0123456789abcdef", "WEBHOOK_SECRET": "whsec_site"}}
"""
APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
        "django.contrib.staticfiles", "channels", "django_modelriver"]


def site(tmp_path: Path, apps: list[str], engine: str = "django.contrib.sessions.backends.db",
         *, asgi: bool = True) -> dict[str, str]:
    """A minimal project in ``tmp_path`` (settings, urls, asgi); returns the env that selects it."""
    (tmp_path / "site_settings.py").write_text(SITE_SETTINGS.format(
        apps=apps, engine=engine, db=str(tmp_path / "db.sqlite3"),
        asgi='ASGI_APPLICATION = "site_asgi.application"' if asgi else ""))
    (tmp_path / "site_urls.py").write_text(
        "from django.urls import include, path\n"
        "urlpatterns = [path('modelriver/', include('django_modelriver.urls'))]\n")
    (tmp_path / "site_asgi.py").write_text(
        "from django_modelriver.routing import websocket_application\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELRIVER_", "DJANGO_"))}
    return {**env, "DJANGO_SETTINGS_MODULE": "site_settings", "PYTHONPATH": str(tmp_path)}


def django_admin(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_runserver_without_daphne_first_is_flagged_and_refused(tmp_path: Path) -> None:
    after_staticfiles = site(tmp_path, [*APPS[:4], "daphne", *APPS[4:]])
    checked = django_admin(after_staticfiles, "check", cwd=tmp_path)
    assert "django_modelriver.W005" in checked.stderr and "'daphne' first" in checked.stderr, checked.stderr
    assert "django.contrib.staticfiles's" in checked.stderr
    port = free_port()
    served = django_admin(after_staticfiles, "runserver", "--noreload", f"127.0.0.1:{port}", cwd=tmp_path)
    assert served.returncode != 0 and "django_modelriver.E012" in served.stderr, served.stderr + served.stdout
    daphne_first = site(tmp_path, ["daphne", *APPS])
    clean = django_admin(daphne_first, "check", cwd=tmp_path)
    assert clean.returncode == 0 and "W005" not in clean.stderr and "E012" not in clean.stderr, clean.stderr
    assert "W004" not in clean.stderr
    no_asgi = django_admin(site(tmp_path, ["daphne", *APPS], asgi=False), "check", cwd=tmp_path)
    assert "django_modelriver.W004" in no_asgi.stderr and "ASGI_APPLICATION" in no_asgi.stderr, no_asgi.stderr


def test_an_unmigrated_session_table_is_flagged_by_the_database_check(tmp_path: Path) -> None:
    env = site(tmp_path, ["daphne", *APPS])
    assert "W006" not in django_admin(env, "check", cwd=tmp_path).stderr  # no database check: no query
    unmigrated = django_admin(env, "check", "--database", "default", cwd=tmp_path)
    assert "django_modelriver.W006" in unmigrated.stderr and "manage.py migrate" in unmigrated.stderr
    assert "'django_session'" in unmigrated.stderr, unmigrated.stderr
    migrated = django_admin(env, "migrate", "--noinput", "-v", "0", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr  # a warning: it does not stop migrate
    assert "W006" not in django_admin(env, "check", "--database", "default", cwd=tmp_path).stderr
    cookies = site(tmp_path, ["daphne", *APPS], engine="django.contrib.sessions.backends.signed_cookies")
    (tmp_path / "db.sqlite3").unlink()
    assert "W006" not in django_admin(cookies, "check", "--database", "default", cwd=tmp_path).stderr

