"""Typed errors and the one table that maps them to process exit codes.

Every error a user can cause is a subclass of :class:`CertifyError`. ``cli.py``
catches them, prints ``error: <message>`` on one line and exits with
:func:`exit_code_for`. Library users catch the classes directly.
"""

from __future__ import annotations


class CertifyError(Exception):
    """Base class of every error certify raises on purpose.

    ``field`` names the input at fault as the library knows it (``chunk_tokens``); the
    command line shows it as its flag (``--chunk-tokens``).
    """

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        self.message = message
        self.field = field
        self.hint = hint
        text = message
        if field is not None and not message.startswith(field):
            text = f"{field}: {message}"
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class UsageError(CertifyError):
    """Command-line arguments that do not fit together."""


class InvalidInputError(CertifyError):
    """A value outside its documented domain (names the offending field)."""


class ModelError(CertifyError):
    """A model that cannot be found, read or is not a supported causal LM."""


class ArtifactFormatError(CertifyError):
    """A ``.certz`` file that is truncated, corrupted or of an unknown version."""


class DataError(CertifyError):
    """A dataset that is empty, malformed, or made with another tokenizer."""


class WeightRuleError(DataError):
    """Sampled mode: a weight rule that cannot hold for this tokenizer or dataset, or a unit
    whose token count exceeded its weight (the lower bound on n would be wrong)."""


class DatasetChangedError(DataError):
    """Sampled mode: the dataset's units differ from the ones recorded (or journaled)."""


class EvaluationError(CertifyError):
    """Risk evaluation that cannot produce trustworthy numbers (e.g. NaN losses)."""


class CertificateError(CertifyError):
    """A certificate that does not validate against its schema or cannot be built."""


class SigningError(CertifyError):
    """Key generation, loading or signing failed."""


class VerificationError(CertifyError):
    """``certify verify`` found at least one failing check."""


class HubError(CertifyError):
    """The Hub (or a mirror) refused or failed a request."""


class AuthenticationError(HubError):
    """No token, or a token the Hub rejects (401/403)."""


class InterruptedRunError(CertifyError):
    """The user interrupted the run (Ctrl-C); nothing half-written was left."""


class HopelessPlanError(CertifyError):
    """``certify run --require-nonvacuous``: the plan says the bound cannot be non-vacuous
    (even the most favourable assumed loss and the smallest size estimate give a bits bound
    at or above log2 V), so the run stopped before any heavy stage."""


#: The one error-to-exit-code table. Order matters: the first matching class wins,
#: so subclasses come before their bases. 0 is success, 1 an unexpected bug,
#: 2 is reserved for usage errors (typer/click use 2 as well).
EXIT_CODES: tuple[tuple[type[CertifyError], int], ...] = (
    (UsageError, 2),
    (InvalidInputError, 3),
    (ModelError, 4),
    (ArtifactFormatError, 5),
    (WeightRuleError, 13),
    (DatasetChangedError, 14),
    (DataError, 6),
    (EvaluationError, 7),
    (CertificateError, 8),
    (SigningError, 9),
    (VerificationError, 10),
    (AuthenticationError, 12),
    (HubError, 11),
    (InterruptedRunError, 130),
    (HopelessPlanError, 15),
    (CertifyError, 1),
)

UNEXPECTED_ERROR_EXIT_CODE = 1


def exit_code_for(error: BaseException) -> int:
    """Exit code for ``error`` according to :data:`EXIT_CODES`."""
    for error_class, code in EXIT_CODES:
        if isinstance(error, error_class):
            return code
    return UNEXPECTED_ERROR_EXIT_CODE
