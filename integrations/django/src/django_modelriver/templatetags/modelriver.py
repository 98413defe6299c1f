"""Template tags: ``{% load modelriver %}``.

``{% modelriver_chat %}`` renders the ready chat widget (history, steps panel, streaming text,
structured-output card, stop button, resume after reload). Options::

    {% modelriver_chat workflows="demo-chat:Chat,demo-structured:Structured" server_resume=True %}

``workflows`` is a comma-separated list of ``name[:label]`` (default: ``DEFAULT_WORKFLOW``).
``{% modelriver_assets %}`` emits only the script and stylesheet tags, for your own UI on
``ModelRiver.Client``. The template context must carry ``request`` (the ``request`` context
processor) so the CSRF token can be handed to the script. Nothing secret is rendered.

The widget's markup is the template ``django_modelriver/chat.html``: override it with a template
of that name in your project (its context is described there).
"""

from __future__ import annotations

import itertools
from typing import Any

from django import template
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_modelriver.conf import modelriver_settings

register = template.Library()

_ids = itertools.count(1)


@register.simple_tag
def modelriver_assets() -> SafeString:
    """The widget's stylesheet and scripts: the browser module (``modelriver-link.js``, core's
    protocol code) as a module, then the widget (a classic script that renders over it)."""
    return format_html('<link rel="stylesheet" href="{}"><script type="module" src="{}"></script>'
                       '<script src="{}" defer></script>',
                       static("django_modelriver/modelriver.css"), static("django_modelriver/modelriver-link.js"),
                       static("django_modelriver/modelriver.js"))


def _workflows(spec: str | None) -> list[dict[str, str]]:
    if not spec:
        default = modelriver_settings().default_workflow or ""
        return [{"name": default, "label": "Chat"}]
    result = []
    for item in spec.split(","):
        name, _, label = item.strip().partition(":")
        if name:
            result.append({"name": name, "label": label or name})
    return result


@register.inclusion_tag("django_modelriver/chat.html", takes_context=True)
def modelriver_chat(context: Any, workflows: str | None = None, server_resume: bool = False,
                    placeholder: str = "Ask something...") -> dict[str, Any]:
    """The chat widget (``django_modelriver/chat.html``), configured with this site's URLs and the
    CSRF token."""
    request = context.get("request")
    start = reverse("django_modelriver:start")
    config = {
        "apiBaseUrl": start[: -len("start")].rstrip("/"),
        "startUrl": start,
        "cancelUrl": reverse("django_modelriver:cancel"),
        "reconnectUrl": reverse("django_modelriver:reconnect"),
        "csrfToken": get_token(request) if request is not None else None,
        "workflows": _workflows(workflows),
        "serverResume": bool(server_resume),
        "placeholder": placeholder,
    }
    return {"config": config, "config_id": f"modelriver-config-{next(_ids)}", "workflows": config["workflows"],
            "placeholder": placeholder, "server_resume": config["serverResume"]}
