"""gradio_modelriver (work in progress)."""

from gradio_modelriver._version import __version__

__all__ = ["__version__"]
