"""Typed errors and the one table that maps them to process exit codes.

Every error a user can cause is a subclass of :class:`CertifyError`. ``cli.py``
catches them, prints ``error: <message>`` on one line and exits with
:func:`exit_code_for`. Library users catch the classes directly.
"""

from __future__ import annotations


class CertifyError(Exception):
    """Base class of every error certify raises on purpose."""

    #: short tag shown in ``--json`` error output
    kind: str = "error"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
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

    kind = "usage"


class InvalidInputError(CertifyError):
    """A value outside its documented domain (names the offending field)."""

    kind = "invalid_input"


class ModelError(CertifyError):
    """A model that cannot be found, read or is not a supported causal LM."""

    kind = "model"


class ArtifactFormatError(CertifyError):
    """A ``.certz`` file that is truncated, corrupted or of an unknown version."""

    kind = "artifact_format"


class DataError(CertifyError):
    """A dataset that is empty, malformed, or made with another tokenizer."""

    kind = "data"


class WeightRuleError(DataError):
    """Sampled mode: a weight rule that cannot hold for this tokenizer or dataset, or a unit
    whose token count exceeded its weight (the lower bound on n would be wrong)."""

    kind = "weight_rule"


class DatasetChangedError(DataError):
    """Sampled mode: the dataset's units differ from the ones recorded (or journaled)."""

    kind = "dataset_changed"


class EvaluationError(CertifyError):
    """Risk evaluation that cannot produce trustworthy numbers (e.g. NaN losses)."""

    kind = "evaluation"


class CertificateError(CertifyError):
    """A certificate that does not validate against its schema or cannot be built."""

    kind = "certificate"


class SigningError(CertifyError):
    """Key generation, loading or signing failed."""

    kind = "signing"


class VerificationError(CertifyError):
    """``certify verify`` found at least one failing check."""

    kind = "verification"


class HubError(CertifyError):
    """The Hub (or a mirror) refused or failed a request."""

    kind = "hub"


class AuthenticationError(HubError):
    """No token, or a token the Hub rejects (401/403)."""

    kind = "authentication"


class InterruptedRunError(CertifyError):
    """The user interrupted the run (Ctrl-C); nothing half-written was left."""

    kind = "interrupted"


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
    (CertifyError, 1),
)

UNEXPECTED_ERROR_EXIT_CODE = 1


def exit_code_for(error: BaseException) -> int:
    """Exit code for ``error`` according to :data:`EXIT_CODES`."""
    for error_class, code in EXIT_CODES:
        if isinstance(error, error_class):
            return code
    return UNEXPECTED_ERROR_EXIT_CODE
