"""The version of releaser (single source for packaging and ``--version``)."""

__version__ = "0.1.0"
