"""The widget's assets: the shared browser module, shipped as a static file, loads before the widget."""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles import finders
from django.template import engines
from django.test import RequestFactory

from support import ROOT


def test_the_module_loads_as_a_module_before_the_classic_widget_script() -> None:
    html = engines["django"].from_string("{% load modelriver %}{% modelriver_assets %}").render(
        {}, RequestFactory().get("/"))
    module = '<script type="module" src="/static/django_modelriver/modelriver-link.js"></script>'
    widget = '<script src="/static/django_modelriver/modelriver.js" defer></script>'
    assert module in html and widget in html
    # Module scripts and deferred classic scripts run in document order once the page is parsed.
    assert html.index(module) < html.index(widget)


def test_the_static_module_is_cores_browser_module() -> None:
    found = finders.find("django_modelriver/modelriver-link.js")
    assert found is not None
    source = ROOT / "core/src/modelriver/browser/modelriver-link.js"
    assert Path(found).read_bytes() == source.read_bytes()
