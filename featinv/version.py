"""The package version: the one place it is written (``featinv.__version__`` and pyproject.toml read it)."""

__version__ = "0.1.0"
