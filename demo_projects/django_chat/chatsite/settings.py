"""Settings of the Django chat demo. Everything secret comes from the environment.

``MODELRIVER_UPSTREAM=realm`` (with ``REALM_URL``, ``REALM_API_KEY``) sends the requests to a
Realm server instead of ModelRiver: django_modelriver's default ``UPSTREAM`` honours core's switch
(``demo-events`` needs ModelRiver's webhooks and callback; on Realm it is refused with a message).

``MODELRIVER_API_BASE`` / ``MODELRIVER_API_KEY``: the gateway (default: ``modelriver dev``'s
URL, and the key it prints); ``MODELRIVER_WEBHOOK_SECRET`` (default ``whsec_dev``, the dev
gateway's); ``REDIS_URL``: run several processes on Redis (channels_redis) instead of one in
memory. Dev-only knobs for tests: ``DJANGO_CHAT_DB`` (SQLite file), ``DJANGO_CHAT_SCRIPTED``
(JSON merged into every request's ``metadata.scripted``, the dev gateway's per-request script),
``MODELRIVER_PUMP_LOCK_TTL`` (seconds before another process takes a dead pump over);
``MODELRIVER_REPLAY_RETENTION`` (seconds a finished request's replay buffer is kept, default 600);
``MODELRIVER_START_RATE`` / ``MODELRIVER_MAX_IN_FLIGHT`` (the start limits per session; ``0`` turns
one off, for benchmarks that start every request from one session; default: the app's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-chat-demo-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]",
                 *filter(None, os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","))]

INSTALLED_APPS = [
    "daphne",  # first: `manage.py runserver` is Daphne's, serving HTTP and WebSockets
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "django_modelriver",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGO_CHAT_DB") or BASE_DIR / "db.sqlite3"}}
# Signed-cookie sessions: nothing to share between processes but SECRET_KEY.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

_scripted = json.loads(os.environ.get("DJANGO_CHAT_SCRIPTED") or "{}")
_metadata = {"scripted": _scripted} if _scripted else {}

MODELRIVER = {
    # API_KEY / API_BASE: from MODELRIVER_API_KEY / MODELRIVER_API_BASE (never in a page).
    "API_BASE": os.environ.get("MODELRIVER_API_BASE") or "http://127.0.0.1:8787",
    "WEBHOOK_SECRET": os.environ.get("MODELRIVER_WEBHOOK_SECRET") or "whsec_dev",
    "DEFAULT_WORKFLOW": "demo-chat",
    "WORKFLOWS": {
        "demo-chat": {"metadata": _metadata},
        "demo-structured": {"metadata": _metadata},
        "demo-events": {"events": ["webhook_received"], "metadata": _metadata},
    },
    "PUMP_LOCK_TTL": float(os.environ.get("MODELRIVER_PUMP_LOCK_TTL") or 10),
    "REPLAY_RETENTION": float(os.environ.get("MODELRIVER_REPLAY_RETENTION") or 600),
    **{key: int(os.environ[f"MODELRIVER_{key}"]) for key in ("START_RATE", "MAX_IN_FLIGHT")
       if os.environ.get(f"MODELRIVER_{key}")},
}

STATIC_URL = "/static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_modelriver": {"handlers": ["console"], "level": "INFO"},
                "chat": {"handlers": ["console"], "level": "INFO"},
                "daphne.server": {"handlers": ["console"], "level": "INFO"}},  # "Listening on ..."
}
