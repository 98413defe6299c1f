"""The public API is exactly what ``__all__`` says, and every name resolves."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "modelriver", "modelriver.phoenix", "modelriver.stream", "modelriver.api", "modelriver.events",
    "modelriver.types", "modelriver.steps", "modelriver.state", "modelriver.exceptions", "modelriver.webhooks",
    "modelriver.realm", "modelriver.realm.upstream", "modelriver.upstream", "modelriver.settings",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_resolve(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


def test_top_level_names_load_lazily_and_match_all() -> None:
    import modelriver

    assert set(modelriver._LAZY) | {"__version__"} == set(modelriver.__all__)
    assert dir(modelriver) == sorted(modelriver.__all__)
    with pytest.raises(AttributeError):
        _ = modelriver.NoSuchName  # type: ignore[attr-defined]


def test_every_error_derives_from_the_root() -> None:
    from modelriver import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.ModelRiverError)
