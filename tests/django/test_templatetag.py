"""``{% modelriver_chat %}`` renders ``django_modelriver/chat.html``: escaped, and overridable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.template import engines
from django.test import RequestFactory, override_settings

PAGE = '{% load modelriver %}{% modelriver_chat workflows=spec placeholder=hint %}'


def render(**context: object) -> str:
    request = RequestFactory().get("/")
    return engines["django"].from_string(PAGE).render({"spec": "demo-chat:Chat", "hint": "Ask", **context}, request)


def test_the_widget_renders_its_config_escaped_from_the_template() -> None:
    html = render(spec='demo-chat:<img src=x onerror=alert(1)>', hint='"><script>alert(2)</script>')
    assert '<link rel="stylesheet" href="/static/django_modelriver/modelriver.css">' in html
    assert '<script src="/static/django_modelriver/modelriver.js" defer></script>' in html
    found = re.search(r'<script id="(modelriver-config-\d+)" type="application/json">(.*?)</script>', html)
    assert found is not None, html
    config_id, raw = found.groups()
    assert f'<div class="mr-chat" data-modelriver-chat data-config-id="{config_id}"></div>' in html
    assert "<img" not in raw and "<script>alert" not in html  # json_script escapes < > &
    config = json.loads(raw)
    assert config["workflows"] == [{"name": "demo-chat", "label": "<img src=x onerror=alert(1)>"}]
    assert config["placeholder"] == '"><script>alert(2)</script>'
    assert config["startUrl"] == "/modelriver/start" and config["csrfToken"]
    assert "comment" not in html.lower() and "Override it" not in html  # the template's notes stay out


def test_a_project_template_overrides_the_widget(tmp_path: Path) -> None:
    own = tmp_path / "django_modelriver"
    own.mkdir()
    (own / "chat.html").write_text(
        '<section class="my-chat" data-modelriver-chat data-config-id="{{ config_id }}">'
        '{% for w in workflows %}<b>{{ w.label }}</b>{% endfor %}</section>{{ config|json_script:config_id }}')
    templates = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [str(tmp_path)],
                  "APP_DIRS": True}]
    with override_settings(TEMPLATES=templates):
        html = render(spec="demo-chat:<i>Chat</i>")
    assert html.startswith('<section class="my-chat" data-modelriver-chat data-config-id="modelriver-config-')
    assert "<b>&lt;i&gt;Chat&lt;/i&gt;</b>" in html  # autoescaped in the override too
    assert 'class="mr-chat"' not in html
