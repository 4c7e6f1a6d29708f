"""certify: compressed language models with certified token-level risk bounds.

Public API: :func:`load` (a ``.certz`` artifact as a transformers model),
:func:`run` (the whole pipeline) and :func:`verify` (check a certificate).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "run", "verify"]


def load(path: Any, **kwargs: Any) -> Any:
    """Decode a ``.certz`` file and return the transformers model it holds."""
    from certify.container import load_model

    return load_model(path, **kwargs)


def run(*args: Any, **kwargs: Any) -> Any:
    """Run the whole pipeline (see :func:`certify.pipeline.run`)."""
    from certify.pipeline import run as _run

    return _run(*args, **kwargs)


def verify(*args: Any, **kwargs: Any) -> Any:
    """Verify a run folder or certificate (see :func:`certify.certificate.verify`)."""
    from certify.certificate import verify as _verify

    return _verify(*args, **kwargs)
