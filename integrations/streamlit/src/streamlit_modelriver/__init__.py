"""streamlit_modelriver (work in progress)."""

from streamlit_modelriver._version import __version__

__all__ = ["__version__"]
