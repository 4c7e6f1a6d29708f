"""The package version (one place; ``certify.__version__`` re-exports it)."""

__version__ = "0.1.0"
