"""django_modelriver (work in progress)."""

from django_modelriver._version import __version__

__all__ = ["__version__"]
