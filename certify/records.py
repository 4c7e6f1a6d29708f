"""Frozen records that pipeline stages pass to each other.

Stages never exchange loose dicts: each returns one of these. Field names carry
units (``size_bytes``, ``prior_nats``) and match the certificate's JSON keys,
so ``to_dict`` of a record is the JSON the certificate carries.

Sections are owned by stages; add new records to the section of your stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

SamplingMethod = Literal["bernstein", "hoeffding", "exhaustive"]
MetricName = Literal["bits", "top_k_error"]


def to_dict(record: Any) -> dict[str, Any]:
    """JSON-ready dict of a record (tuples become lists, nested records dicts)."""
    result = dataclasses.asdict(record)
    return _lists(result)  # type: ignore[no-any-return]


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(item) for item in value]
    return value


# --------------------------------------------------------------------------- bound


@dataclass(frozen=True)
class MetricSample:
    """Measured statistics of one loss over the sampled chunks (input of the bound).

    For ``bits`` set ``alpha`` (smoothing); for ``top_k_error`` set ``k``.
    ``sample_mean`` is the mean over chunks of the per-chunk mean loss, in the
    loss's unit (bits per token, or error rate); ``sample_variance`` is the
    unbiased variance of those per-chunk means; ``samples`` the number of chunks.
    """

    name: MetricName
    sample_mean: float
    sample_variance: float
    samples: int
    alpha: float | None = None
    k: int | None = None


@dataclass(frozen=True)
class BoundInput:
    """Everything the bound depends on; what ``certify bound INPUT.json`` reads."""

    vocab_size: int
    n_tokens: int
    size_bytes: int
    metrics: tuple[MetricSample, ...]
    hyperparameter_configurations: int = 1
    delta: float = 0.05
    delta_split: float = 0.5
    sampling_method: SamplingMethod = "bernstein"
    heldout: bool = False


@dataclass(frozen=True)
class PriorRecord:
    """ln 1/P(h) and what it was computed from."""

    size_bytes: int
    hyperparameter_configurations: int
    nats: float


@dataclass(frozen=True)
class MetricBound:
    """One certified statement: ``bound`` ≥ the conditional risk of this loss."""

    name: MetricName
    alpha: float | None
    k: int | None
    loss_min: float
    loss_range: float
    sample_mean: float
    sample_variance: float
    samples: int
    complexity_term: float
    sampling_term: float
    bound: float


@dataclass(frozen=True)
class BoundResult:
    """The certificate's ``bound`` object."""

    delta: float
    delta_c: float
    delta_s: float
    heldout: bool
    prior: PriorRecord
    statements: int
    sampling_method: SamplingMethod
    n_tokens: int
    vocab_size: int
    metrics: tuple[MetricBound, ...]
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- model + artifact


@dataclass(frozen=True)
class ModelRecord:
    """Where the model came from (certificate ``model``)."""

    source: str
    revision: str
    architecture: str
    parameters: int
    vocab_size: int


@dataclass(frozen=True)
class QuantizationSettings:
    """Every choice that changes the artifact's bytes."""

    method: str = "rtn-groupwise"
    bits: int = 4
    group_size: int = 128
    symmetric: bool = False
    high_precision_bits: int = 8
    high_precision_tensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArtifactRecord:
    """The published file (certificate ``artifact``)."""

    path: str
    sha256: str
    size_bytes: int
    format_version: int
    quantization: dict[str, Any]
    bits_per_parameter: float
    decoded_weights_sha256: str
    parameters: int


# --------------------------------------------------------------------------- data + risk


@dataclass(frozen=True)
class SamplingRecord:
    """How chunks were drawn."""

    method: Literal["length_proportional_with_replacement", "exhaustive"]
    samples: int
    seed: int


@dataclass(frozen=True)
class DatasetRecord:
    """A tokenized dataset (certificate ``data``, minus chunking and sampling)."""

    source: str
    revision: str
    tokenizer_sha256: str
    n_tokens: int
    documents: int
    shards_sha256: str
    max_documents: int | None = None


@dataclass(frozen=True)
class RiskRecord:
    """Measured losses of the decoded model on sampled chunks.

    ``metrics`` has exactly the shape ``certify bound`` reads.
    """

    vocab_size: int
    n_tokens: int
    chunk_tokens: int
    context_tokens: int
    sampling: SamplingRecord
    metrics: tuple[MetricSample, ...]
    device: str
    dtype: str
    tokens_scored: int
    seconds: float
