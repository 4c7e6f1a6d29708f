"""certify: compressed language models with certified token-level risk bounds.

Public API, with the real signatures of the functions they are:
:func:`load` (a ``.certz`` artifact as a transformers model,
:func:`certify.container.load_model`), :func:`run` (the whole pipeline,
:func:`certify.pipeline.run`) and :func:`verify` (check a certificate,
:func:`certify.verify.verify`).
"""

from __future__ import annotations

from certify._version import __version__
from certify.container import load_model as load
from certify.pipeline import run

# ``certify.verify`` is the function, not the module of the same name: imported here,
# once, so that no later ``import certify.verify`` rebinds the attribute
from certify.verify import verify

__all__ = ["__version__", "load", "run", "verify"]
