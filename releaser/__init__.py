"""releaser: release manager for ML models and LLM prompts."""

from releaser._version import __version__

__all__ = ["__version__"]
