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

import numpy as np

from certify.errors import InvalidInputError

SamplingMethod = Literal["bernstein", "hoeffding", "exhaustive"]
MetricName = Literal["bits", "top_k_error"]


#: field metadata key: leave the field out of :func:`to_dict` while its value is None
#: (fields added to a record whose JSON has a fixed, versioned form)
OMIT_IF_NONE = "certify_omit_if_none"


def _at_least(value: int, minimum: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"must be an integer ≥ {minimum}, got {value!r}", field=field)


def to_dict(record: Any) -> dict[str, Any]:
    """JSON-ready dict of a record (tuples become lists, nested records dicts).

    Fields marked ``metadata={OMIT_IF_NONE: True}`` are left out while they are None.
    """
    result = dataclasses.asdict(record)
    _drop_unset(record, result)
    return _lists(result)  # type: ignore[no-any-return]


def _drop_unset(record: Any, result: dict[str, Any]) -> None:
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if value is None and item.metadata.get(OMIT_IF_NONE):
            del result[item.name]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _drop_unset(value, result[item.name])


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
    #: version 2: the same statistics for q_i = (l_i − Y_i)² (Y_i the statement's centre),
    #: in the loss's unit squared (bits², or error²); both or neither
    square_mean: float | None = None
    square_variance: float | None = None


@dataclass(frozen=True)
class SampledDraws:
    """Sampled mode's unit draws (DESIGN.md "sampled mode"): what bounds n from below.

    ``total_weight`` is W = Σ w_u (an integer token count ≥ n), ``accepted`` is G (the
    draws stop at the G-th accepted unit) and ``drawn`` is D, the number of draws.
    """

    total_weight: int
    accepted: int
    drawn: int


@dataclass(frozen=True)
class BoundInput:
    """Everything the bound depends on; what ``certify bound INPUT.json`` reads.

    ``n_tokens`` is the exact n; in sampled mode it is None and ``sampled`` (with
    ``delta_n``, default δ/10) gives a lower bound on n instead. ``bound_version`` 1
    selects the version-1 formulas (v1 certificates keep verifying with them).
    ``search_scored_sample``: a search over settings scored the certification sample
    itself, so the sampling union also runs over the H configurations.
    """

    vocab_size: int
    n_tokens: int | None
    size_bytes: int
    metrics: tuple[MetricSample, ...]
    hyperparameter_configurations: int = 1
    delta: float = 0.05
    delta_split: float = 0.5
    sampling_method: SamplingMethod = "bernstein"
    heldout: bool = False
    sampled: SampledDraws | None = None
    delta_n: float | None = None
    search_scored_sample: bool = False
    bound_version: int = 2


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
    # version 2 (None in version 1; docs/MATH.md "Version 2"):
    #: q's chunk-mean statistics as measured (loss unit²)
    square_mean: float | None = None
    square_variance: float | None = None
    #: U = sample_mean + sampling_term, the upper bound on R̂ (loss unit)
    mean_bound: float | None = None
    #: W = square_mean + square_sampling_term, the upper bound on V̂ (loss unit²)
    square_sampling_term: float | None = None
    square_bound: float | None = None
    #: each form's certified value (loss unit); freedman at its best λ of the grid
    azuma: float | None = None
    freedman: float | None = None
    freedman_lambda: float | None = None
    #: which form gave ``bound`` (= mean_bound + complexity_term, the smaller form)
    certified_by: Literal["azuma", "freedman"] | None = None


@dataclass(frozen=True)
class BoundResult:
    """The certificate's ``bound`` object.

    A result without ``bound_version`` (1) has exactly the version-1 fields; version 2
    adds the rest. ``n_tokens`` is None in sampled mode, where ``n_lower_bound`` (from
    ``sampled`` at ``delta_n``) is the n of every martingale term.
    """

    delta: float
    delta_c: float
    delta_s: float
    heldout: bool
    prior: PriorRecord
    statements: int
    sampling_method: SamplingMethod
    n_tokens: int | None
    vocab_size: int
    metrics: tuple[MetricBound, ...]
    summary: dict[str, Any] = field(default_factory=dict)
    bound_version: int = 1
    delta_n: float | None = None
    #: K_c: (statement, form) events sharing δ_c (61·K, or K without square statistics)
    statement_events: int | None = None
    #: one-sided sampling bounds sharing δ_s (2K, or K; times H if the search scored them)
    sampling_events: int | None = None
    search_scored_sample: bool = False
    sampled: SampledDraws | None = None
    #: the δ_n-quantile of Beta(G, D − G + 1), a lower bound on n / total_weight
    acceptance_lower_bound: float | None = None
    n_lower_bound: int | None = None


# --------------------------------------------------------------------------- model + artifact


@dataclass(frozen=True)
class ResolvedModel:
    """A model found on disk (or fetched from the Hub) and checked to be a causal LM.

    ``revision`` is the Hub commit sha, or for local inputs ``sha256:<hex>`` of the
    weight and config files (see docs/FORMAT.md). ``weight_files`` and
    ``tokenizer_files`` are names relative to ``local_dir``; ``gguf_file`` is set
    (a name in ``local_dir``) only for GGUF inputs.
    """

    source: str
    revision: str
    local_dir: str
    config: dict[str, Any] = field(hash=False, compare=True)
    architecture: str
    weight_files: tuple[str, ...]
    tokenizer_files: tuple[str, ...]
    gguf_file: str | None = None


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
    """Every choice that changes the artifact's bytes.

    ``method`` is ``"rtn-groupwise"`` (round to nearest) or ``"gptq"`` (Hessian-aware,
    :mod:`certify.quantize.gptq`). The fields after ``high_precision_tensors`` belong to
    GPTQ only: they are None (and absent from :func:`to_dict`, so RTN headers keep their
    exact form) unless ``method == "gptq"``, which needs all of them except
    ``rate_lambda`` and ``scale_search_*``. docs/FORMAT.md, "GPTQ settings", defines each.
    """

    method: str = "rtn-groupwise"
    bits: int = 4
    group_size: int = 128
    symmetric: bool = False
    high_precision_bits: int = 8
    high_precision_tensors: tuple[str, ...] = ()
    #: added to the Hessian's diagonal, as a fraction of its mean (0.01 = 1%)
    damping: float | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: columns per lazy batch update
    block_size: int | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: columns processed in order of decreasing Hessian diagonal (groups stay RTN's)
    act_order: bool | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: each stage of a block's linears is calibrated on the outputs of the quantized ones
    true_sequential: bool | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: weight of each calibration window's first token (BOS, the attention sink) in Hessians
    first_token_weight: float | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: rate-aware rounding weight (bits of code length per squared step); absent = 0
    rate_lambda: float | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: grid scales around RTN's tried per group by weighted rounding error; absent = 0
    scale_search_steps: int | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: the search's price of a bit, relative to the bits-neutral price; absent = 0
    scale_search_price: float | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: where the calibration tokens came from (a dataset source string)
    calibration_source: str | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: sha256 of the calibration tokens (little-endian int64, windows x window_tokens)
    calibration_sha256: str | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: root seed of the calibration draw (child stream CALIBRATION); None if not drawn
    calibration_seed: int | None = field(default=None, metadata={OMIT_IF_NONE: True})
    calibration_tokens: int | None = field(default=None, metadata={OMIT_IF_NONE: True})
    calibration_window_tokens: int | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: "cpu" or "cuda" (float arithmetic, hence the codes, may differ between devices)
    compute_device: str | None = field(default=None, metadata={OMIT_IF_NONE: True})
    #: quantized tensors GPTQ left to RTN (embeddings, LM head, unused linears), sorted
    rtn_tensors: tuple[str, ...] | None = field(default=None, metadata={OMIT_IF_NONE: True})


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
    """How chunks were drawn.

    ``seed_inputs`` (version 2, when no seed was given): what the seed was derived from
    before any loss was seen (certify.streams.derive_seed), so verify can recompute it.
    ``stream`` (version 2): the child stream of the seed the draw used.
    """

    method: Literal[
        "length_proportional_with_replacement", "exhaustive", "units_proportional_to_weight"
    ]
    samples: int
    seed: int
    seed_inputs: dict[str, Any] | None = field(default=None, metadata={OMIT_IF_NONE: True})
    stream: Literal["certification", "search"] | None = field(
        default=None, metadata={OMIT_IF_NONE: True}
    )


@dataclass(frozen=True)
class DataSource:
    """Where the text comes from and how it is read: every option that changes the tokens.

    ``source`` is a file, a folder, a Hugging Face dataset id or a token-shard folder.
    ``config``/``split``/``revision`` apply to Hub datasets, ``extensions``/``exclude``/
    ``decode_errors`` to folders (None: the defaults of docs/DATA.md), ``text_column`` to
    jsonl/parquet/Hub rows; ``max_documents`` keeps the first N documents.
    """

    source: str
    revision: str | None = None
    config: str | None = None
    split: str = "train"
    text_column: str = "text"
    max_documents: int | None = None
    extensions: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    decode_errors: Literal["strict", "replace", "skip"] = "strict"
    #: "exact" tokenizes everything (n counted), "sampled" draws units (n bounded below),
    #: "auto" picks sampled for a Hub dataset or a large local one (docs/DATA.md)
    mode: Literal["exact", "sampled", "auto"] = "exact"
    #: sampled mode: G accepted units, r chunks per unit, documents truncated to c tokens
    #: (None: the bytes rule, for tokenizers whose every token covers a byte)
    accepted_units: int = 1000
    chunks_per_unit: int = 4
    truncate_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "sampled", "auto"):
            raise InvalidInputError(
                f"must be exact, sampled or auto, got {self.mode!r}", field="mode"
            )
        _at_least(self.accepted_units, 2, "accepted_units")
        _at_least(self.chunks_per_unit, 1, "chunks_per_unit")
        if self.truncate_tokens is not None:
            _at_least(self.truncate_tokens, 1, "truncate_tokens")
        if self.max_documents is not None and self.max_documents < 1:
            raise InvalidInputError(
                f"must be at least 1, got {self.max_documents}", field="max_documents"
            )
        if self.decode_errors not in ("strict", "replace", "skip"):
            raise InvalidInputError(
                f"must be strict, replace or skip, got {self.decode_errors!r}",
                field="decode_errors",
            )


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
    #: sha256 of the documents' end offsets (token shards format 2; None before)
    documents_sha256: str | None = field(default=None, metadata={OMIT_IF_NONE: True})


@dataclass(frozen=True)
class SampledDataRecord:
    """A dataset read in sampled mode (DESIGN.md "sampled mode", docs/DATA.md).

    The dataset is the ordered list of ``units`` (sha256 ``units_sha256``) with weights
    summing to ``total_weight`` = W ≥ n under ``weight_rule`` ("truncate": w_u = c·m_u with
    c = ``truncation_tokens``; "bytes": w_u = bytes_u + e·m_u with e =
    ``extra_tokens_per_document``). Draws stopped at the ``accepted``-th (G) accepted
    unit after ``drawn`` (D) draws; ``chunks_per_unit`` (r) windows of ``chunk_tokens``
    (S) plus up to ``context_tokens`` (P) context were taken from each accepted unit.
    ``source_options`` is what re-enumerates the same units (text column, extensions,
    config, split, ...). ``draws_sha256`` hashes every draw's unit, token count and the
    sha256 of the bytes read, so a redraw proves it read the same data.
    ``tokens_tokenized`` / ``bytes_read`` / ``documents_tokenized`` count the distinct
    units drawn (each tokenized once). n_lo = W·BetaQuantile(δ_n; G, D − G + 1) is the
    bound stage's (fields ``total_weight``, ``accepted``, ``drawn``).
    """

    source: str
    revision: str
    source_options: dict[str, Any] = field(hash=False, compare=True)
    tokenizer_sha256: str
    vocab_size: int
    eos_token_id: int
    weight_rule: Literal["truncate", "bytes"]
    truncation_tokens: int | None
    extra_tokens_per_document: int
    total_weight: int
    units: int
    units_sha256: str
    accepted: int
    drawn: int
    chunks_per_unit: int
    chunk_tokens: int
    context_tokens: int
    seed: int
    tokens_tokenized: int
    documents_tokenized: int
    bytes_read: int
    draws_sha256: str


@dataclass(frozen=True, eq=False)
class TokenWindows:
    """Chunks to score, each with its own context (DESIGN.md "The bound", version 2).

    Window j is ``tokens[offsets[j]:offsets[j + 1]]``: its first ``context_tokens[j]``
    tokens are context (earlier tokens of the same document, at most P, never scored),
    the rest is the chunk (every token scored). The scorer prepends one BOS token.
    ``observation[j]`` names the observation the window's chunk mean belongs to: in
    exact mode every window is its own observation (0, 1, 2, ...); in sampled mode the
    r windows of one accepted unit share the unit's observation index, and the
    observation is the mean of their chunk means. ``chunk_ids`` identify each chunk in
    its dataset (for resuming and for ``verify --recompute-risk``): int64 rows of
    (unit or -1, document, chunk index within the document).
    """

    tokens: np.ndarray
    offsets: np.ndarray
    context_tokens: np.ndarray
    observation: np.ndarray
    chunk_ids: np.ndarray

    @property
    def count(self) -> int:
        """Number of windows."""
        return int(self.offsets.size) - 1

    def scored_tokens(self) -> np.ndarray:
        """Tokens scored in each window (int64)."""
        return np.diff(self.offsets) - self.context_tokens

    def window(self, j: int) -> np.ndarray:
        """Context and chunk tokens of window ``j`` (int64)."""
        start, stop = int(self.offsets[j]), int(self.offsets[j + 1])
        return np.asarray(self.tokens[start:stop], dtype=np.int64)


@dataclass(frozen=True)
class RiskRecord:
    """Measured losses of the decoded model on sampled chunks.

    ``metrics`` has exactly the shape ``certify bound`` reads.
    """

    vocab_size: int
    #: exact n; None in sampled mode (``data`` is then a SampledDataRecord)
    n_tokens: int | None
    chunk_tokens: int
    context_tokens: int
    sampling: SamplingRecord
    metrics: tuple[MetricSample, ...]
    device: str
    dtype: str
    tokens_scored: int
    seconds: float
    data: DatasetRecord | SampledDataRecord | None = None
    #: the DESIGN.md version whose token rules were used (risk.json format version)
    bound_version: int = 1


@dataclass(frozen=True)
class EvaluationSettings:
    """Every choice that changes the measured losses (``certify evaluate``'s options).

    ``chunk_tokens`` is S and ``context_tokens`` P of DESIGN.md "The bound";
    ``samples`` chunks are drawn with ``seed`` unless ``exhaustive`` (every chunk once).
    ``seed`` None derives it from the artifact, the data, S, P and s before any loss is
    seen (DESIGN.md; certify.streams.derive_seed). ``stream`` is the child stream of the
    seed the chunks are drawn from: "certification", or "search" for ``--bits auto``'s
    comparisons (independent of the certification sample for every seed).
    ``bound_version`` picks the token rules of that version of DESIGN.md: 2 (chunks
    aligned with documents, ties count against the model, centres and squares), or 1
    (stream chunks, ties favour the target; to re-measure version-1 certificates).
    ``device``/``dtype`` "auto" pick CUDA, then MPS, then CPU, and bf16 on a GPU, fp32
    on CPU. ``batch_size`` is sequences per forward pass; None finds one automatically.
    """

    chunk_tokens: int = 1024
    context_tokens: int = 0
    samples: int = 10000
    exhaustive: bool = False
    seed: int | None = None
    alphas: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5)
    top_k: tuple[int, ...] = (1, 10, 100)
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None
    stream: Literal["certification", "search"] = "certification"
    bound_version: int = 2

    def __post_init__(self) -> None:
        if self.bound_version not in (1, 2):
            raise InvalidInputError(
                f"must be 1 or 2, got {self.bound_version!r}", field="bound_version"
            )
        if self.stream not in ("certification", "search"):
            raise InvalidInputError(f"unknown stream {self.stream!r}", field="stream")
        _at_least(self.chunk_tokens, 1, "chunk_tokens")
        _at_least(self.context_tokens, 0, "context_tokens")
        if not self.exhaustive:
            # the empirical Bernstein term (and every variance) needs two chunks
            _at_least(self.samples, 2, "samples")
        if self.seed is not None:
            _at_least(self.seed, 0, "seed")
        if not self.alphas and not self.top_k:
            raise InvalidInputError("give at least one α or one k", field="alphas")
        for alpha in self.alphas:
            if not 0.0 < alpha < 1.0:
                raise InvalidInputError(f"every α must lie in (0, 1), got {alpha}", field="alphas")
        for k in self.top_k:
            _at_least(k, 1, "top_k")
        if self.batch_size is not None:
            _at_least(self.batch_size, 1, "batch_size")


# --------------------------------------------------------------------------- certificate + signing

CheckStatus = Literal["pass", "fail", "unpinned", "not_run"]


@dataclass(frozen=True)
class KeyPair:
    """A signing key pair on disk; ``fingerprint`` is sha256 of the public key's DER SPKI."""

    private_key_path: str
    public_key_path: str
    fingerprint: str


@dataclass(frozen=True)
class VerificationCheck:
    """One named check of ``certify verify``.

    ``status`` "unpinned" is a signature that verifies with the key published next
    to the certificate but not with a key the user pinned; it passes only when the
    caller allowed unpinned signatures.
    """

    name: str
    passed: bool
    status: CheckStatus
    reason: str


@dataclass(frozen=True)
class VerificationReport:
    """All checks of one ``certify verify`` run; ``passed`` only when every check passed."""

    target: str
    checks: tuple[VerificationCheck, ...]
    fingerprint: str | None = None
    pinned: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def failed(self) -> tuple[VerificationCheck, ...]:
        """The checks that did not pass, in order."""
        return tuple(check for check in self.checks if not check.passed)


# --------------------------------------------------------------------------- pipeline


#: the grid ``certify run --bits auto`` searches: (bits, group_size) pairs
DEFAULT_AUTO_GRID: tuple[tuple[int, int], ...] = (
    (2, 32),
    (2, 128),
    (3, 32),
    (3, 128),
    (4, 32),
    (4, 128),
)


#: the quantizers (``QuantizationSettings.method``): round to nearest, Hessian-aware
QUANTIZER_METHODS = ("rtn-groupwise", "gptq")
#: GPTQ's default calibration size: 64 windows of 512 tokens. On the demo model (4 bits,
#: groups of 128, act order) the held-out loss rose 7.3% with 8,192 tokens, 6.0% with
#: 32,768 and 6.1% with 65,536 (bench/results/quantize.json): more costs time, not loss.
DEFAULT_CALIBRATION_TOKENS = 32_768


@dataclass(frozen=True)
class RunSettings:
    """Everything ``certify run`` needs (the CLI fills it from flags and the environment).

    ``dataset`` None uses the model card's first ``datasets:`` entry, else the documented
    fallback corpus. ``auto_grid`` non-empty means ``--bits auto``: every (bits,
    group_size) pair is compressed and evaluated and the tightest bits bound is kept,
    with ``hyperparameter_configurations = len(auto_grid)``. ``key_dir`` holds the
    signing key made on first use when ``key_path`` is None. ``token`` and
    ``key_passphrase`` are secrets: never hashed, logged or shown in repr.
    """

    model: str
    out_dir: str
    key_dir: str
    dataset: str | None = None
    model_revision: str | None = None
    dataset_revision: str | None = None
    text_column: str = "text"
    max_documents: int | None = None
    quantization: QuantizationSettings = field(default_factory=QuantizationSettings)
    auto_grid: tuple[tuple[int, int], ...] = ()
    #: quantizers ``--bits auto`` tries at every grid point (empty: ``quantization.method``)
    auto_methods: tuple[str, ...] = ()
    #: GPTQ's calibration text (a source ``certify tokenize`` reads); None: the run's dataset
    calibration: str | None = None
    calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    delta: float = 0.05
    heldout: bool = False
    key_path: str | None = None
    push: bool = False
    repo_id: str | None = None
    private: bool = False
    #: the Hub branch to push to (None: main)
    push_branch: str | None = None
    endpoint: str | None = None
    trust_remote_code: bool = False
    shard_cache_dir: str | None = None
    #: how the dataset is read (the options of ``certify tokenize``) and sampled
    dataset_config: str | None = None
    split: str = "train"
    extensions: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    decode_errors: Literal["strict", "replace", "skip"] = "strict"
    data_mode: Literal["exact", "sampled", "auto"] = "auto"
    accepted_units: int = 1000
    chunks_per_unit: int = 4
    truncate_tokens: int | None = None
    #: tokenizer processes of sampled mode (0: in the calling process)
    workers: int = 0
    token: str | None = field(default=None, repr=False)
    key_passphrase: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.delta < 1.0:
            raise InvalidInputError(f"must lie in (0, 1), got {self.delta}", field="delta")
        for bits, group_size in self.auto_grid:
            if not 2 <= bits <= 8 or group_size < 1:  # the codec's limits, as for --bits
                raise InvalidInputError(
                    f"grid entry ({bits}, {group_size}) needs 2..8 bits and a positive group",
                    field="auto_grid",
                )
        if len(set(self.auto_grid)) != len(self.auto_grid):
            raise InvalidInputError("grid entries must be distinct", field="auto_grid")
        for method in (self.quantization.method, *self.auto_methods):
            if method not in QUANTIZER_METHODS:
                raise InvalidInputError(
                    f"expected one of {', '.join(QUANTIZER_METHODS)}, got {method!r}",
                    field="method",
                )
        if len(set(self.auto_methods)) != len(self.auto_methods):
            raise InvalidInputError("quantizers must be distinct", field="auto_methods")
        _at_least(self.calibration_tokens, 2, "calibration_tokens")
        # the reading and sampling options, checked as the data stage will see them
        DataSource(
            source=self.dataset or "-",
            max_documents=self.max_documents,
            decode_errors=self.decode_errors,
            mode=self.data_mode,
            accepted_units=self.accepted_units,
            chunks_per_unit=self.chunks_per_unit,
            truncate_tokens=self.truncate_tokens,
        )
        _at_least(self.workers, 0, "workers")


@dataclass(frozen=True)
class StageTiming:
    """Wall time of one pipeline stage; ``reused`` when a finished stage was kept."""

    stage: str
    seconds: float
    reused: bool


@dataclass(frozen=True)
class MetricSummary:
    """One certified statement as the run's summary table shows it."""

    name: MetricName
    alpha: float | None
    k: int | None
    empirical: float
    bound: float
    perplexity_bound: float | None


@dataclass(frozen=True)
class SearchCandidate:
    """One configuration of ``--bits auto`` and the bits bound it reached."""

    bits: int
    group_size: int
    size_bytes: int
    bits_per_parameter: float
    bits_per_token_bound: float | None
    chosen: bool
    #: the quantizer (``QuantizationSettings.method``)
    method: str = "rtn-groupwise"


@dataclass(frozen=True)
class RunResult:
    """What ``certify run`` produced: paths, the bound's summary, and where time went."""

    run_dir: str
    artifact_path: str
    certificate_path: str
    envelope_path: str
    card_path: str
    plot_path: str
    risk_path: str
    log_path: str
    model_source: str
    dataset_source: str
    dataset_note: str
    size_bytes: int
    bits_per_parameter: float
    quantization: dict[str, Any]
    metrics: tuple[MetricSummary, ...]
    bits_per_token_bound: float | None
    perplexity_bound: float | None
    key_fingerprint: str
    key_path: str
    public_key_path: str
    key_created: bool
    stages: tuple[StageTiming, ...]
    reused_stages: tuple[str, ...]
    search: tuple[SearchCandidate, ...] = ()
    pushed: PushResult | None = None
    vacuous: bool | None = None
    uniform_bits_per_token: float | None = None


#: version of the ``certify plan --json`` object (docs/PLAN.md)
PLAN_VERSION = 1


@dataclass(frozen=True)
class PlanArtifact:
    """The expected size of model.certz, from tensor shapes alone (no weight is read).

    ``size_bytes`` is the estimate (weights coded as if they were normal, the largest
    code entropy of bell-shaped weights); ``size_bytes_low`` the same with heavy-tailed
    Student-t(5) weights, whose codes compress better (docs/PLAN.md "Artifact size").
    """

    method: str
    bits: int
    group_size: int
    symmetric: bool
    tensors: int
    parameters: int
    quantized_parameters: int
    raw_parameters: int
    code_bits_per_parameter: float
    side_bits_per_group: float
    quantized_bytes: int
    raw_bytes: int
    support_file_bytes: int
    header_bytes: int
    size_bytes: int
    size_bytes_low: int
    bits_per_parameter: float
    bits_per_parameter_low: float
    weight_file_bytes: int


@dataclass(frozen=True)
class PlanData:
    """The dataset as metadata shows it, and the n the bound will use.

    ``n_tokens`` is exact for token shards or ``--tokens``, else an estimate
    (``n_tokens_basis`` says which). In sampled mode the bound uses
    ``n_lower_bound`` (from W, G and the expected number of draws at
    ``acceptance_rate``); ``martingale_tokens`` is the n the bound's terms use.
    """

    source: str
    mode: Literal["exact", "sampled"]
    n_tokens: int
    n_tokens_basis: Literal["token_shards", "given", "bytes_estimate"]
    martingale_tokens: int
    documents: int | None
    units: int | None
    file_bytes: int | None
    text_bytes: int | None
    total_weight: int | None
    weight_rule: Literal["truncate", "bytes"] | None
    truncation_tokens: int | None
    tokens_per_byte: float | None
    acceptance_rate: float | None
    accepted_units: int | None
    chunks_per_unit: int | None
    expected_draws: int | None
    n_lower_bound: int | None
    max_documents: int | None = None


@dataclass(frozen=True)
class PlanCost:
    """What the run will cost: tokens, bytes and seconds at documented rates (estimates)."""

    compress_seconds: float
    tokens_tokenized: int
    tokenize_seconds: float
    units_read: int | None
    bytes_read: int
    dataset_download_bytes: int
    model_download_bytes: int
    evaluation_tokens: int
    evaluate_seconds_cpu: float
    evaluate_seconds_gpu: float
    cpu_threads: int
    tokenizer_workers: int


@dataclass(frozen=True)
class PlanBound:
    """The bits bound at one α for one assumed (loss, spread)."""

    alpha: float
    sample_mean: float
    bound: float
    certified_by: Literal["azuma", "freedman"] | None


@dataclass(frozen=True)
class PlanScenario:
    """One assumed per-token loss (bits, unsmoothed) and spread V̂ (bits²): the bound at
    every α, and the dataset tokens needed for a non-vacuous bound and for the target."""

    loss_bits: float
    square_mean: float
    bounds: tuple[PlanBound, ...]
    bits_bound: float
    alpha: float
    vacuous: bool
    tokens_for_nonvacuous: int | None
    tokens_for_target: int | None


@dataclass(frozen=True)
class Plan:
    """What ``certify plan`` (and ``certify run`` before its heavy stages) expects.

    Every number is an estimate from metadata and assumed losses, never a measurement of
    this model; ``assumptions`` says where each default comes from (docs/PLAN.md).
    """

    model: str
    architecture: str
    vocab_size: int
    uniform_bits: float
    artifact: PlanArtifact
    data: PlanData
    cost: PlanCost
    delta: float
    statements: int
    samples: int
    sampling_method: SamplingMethod
    hyperparameter_configurations: int
    heldout: bool
    alphas: tuple[float, ...]
    top_k: tuple[int, ...]
    scenarios: tuple[PlanScenario, ...]
    target_bits: float | None
    best_bits_bound: float
    optimistic_bits_bound: float
    can_be_nonvacuous: bool
    assumptions: tuple[str, ...]
    plan_version: int = PLAN_VERSION


# --------------------------------------------------------------------------- hub


@dataclass(frozen=True)
class PushResult:
    """One commit that published a run folder (what ``certify push --json`` prints)."""

    repo_id: str
    repo_url: str
    revision: str
    commit_oid: str
    commit_url: str
    files: tuple[str, ...]
    pull_request_url: str | None = None
    #: model.sig no longer covered the files (or was missing), so the folder was signed
    #: again with the run's key before pushing
    signed_again: bool = False
    #: the second commit (parent: ``commit_oid``) that pinned the card's verify
    #: instructions to ``commit_oid``; None when the card was not pinned
    card_commit_oid: str | None = None
