"""``certify plan``: what a run will produce and cost, before any heavy work.

From metadata only (docs/PLAN.md):

* :func:`describe_model` -- config, tensor shapes and dtypes (safetensors headers, read by
  range requests on the Hub; GGUF metadata), the tokenizer and the files the artifact
  embeds. No weight is read.
* :func:`estimate_artifact` -- the expected size of model.certz: per quantized tensor the
  entropy of its codes and of its scales and zero points as RTN gives them on simulated
  weights (:func:`quantization_cost`), plus the payload framing, raw tensors, the
  embedded files (compressed exactly as the container does) and the JSON header.
* :func:`survey_data` -- the dataset's units, total weight W, documents and bytes
  (:func:`certify.data.units.enumerate_units`), or n from a token-shard index; the n the
  bound will use (exact n, an estimate from bytes, or sampled mode's n_lo at the expected
  number of draws).
* :func:`scenario_metrics` / :func:`bound_input_at` -- the real v2 bound
  (:func:`certify.bound.compute_bound`) over a grid of assumed losses and spreads.
* :func:`~certify.bound.tokens_needed` -- the smallest n whose bound meets a target
  (bisection on n; the bound is checked to be non-increasing in n at every probe).
* :func:`estimate_cost` -- tokens, bytes and seconds at documented rates.
* :func:`make_plan` -- all of it as one :class:`~certify.records.Plan`.

Everything but :func:`describe_model` and :func:`survey_data` is a pure function.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import lzma
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from certify import hub, models
from certify.bound import (
    DEFAULT_DELTA_N_DIVISOR,
    compute_bound,
    n_lower_bound,
    smoothed_loss_range,
    tokens_needed,
)
from certify.codec import centered_codes, codec_parameters
from certify.container import CHECKSUM_BYTES, FORMAT_VERSION, PRELUDE, library_versions
from certify.data import (
    is_shard_dir,
    load_tokenizer,
    open_shards,
    resolve_mode,
)
from certify.data.units import (
    DEFAULT_BLOCK_LINES,
    UnitList,
    WeightRule,
    enumerate_units,
    weight_rule_for,
)
from certify.errors import InvalidInputError, ModelError, UsageError
from certify.quantize import group_count, quantize_tensor
from certify.records import (
    BoundInput,
    DataSource,
    EvaluationSettings,
    MetricSample,
    Plan,
    PlanArtifact,
    PlanBound,
    PlanCost,
    PlanData,
    PlanScenario,
    QuantizationSettings,
    ResolvedModel,
    SampledDraws,
    SamplingMethod,
    to_dict,
)

__all__ = [
    "DEFAULT_LOSSES_BITS",
    "DEFAULT_SPREADS_BITS2",
    "DEFAULT_TOKENS_PER_BYTE",
    "MAX_TOKENS",
    "ModelFacts",
    "bound_input_at",
    "describe_model",
    "estimate_artifact",
    "estimate_cost",
    "make_plan",
    "quantization_cost",
    "scenario_metrics",
    "survey_data",
    "tokens_needed",
]

# --------------------------------------------------------------------------- documented defaults

#: the assumed per-token losses (bits, before smoothing). 2.5: SmolLM2-135M measured
#: 2.55 bits at α = 0.001 on Python sources (bench/results/bound_slack_measured.json);
#: 3.5: about a 135M-parameter model on web text; 5.0: a poor fit (e.g. 2-3 bit weights).
DEFAULT_LOSSES_BITS: tuple[float, ...] = (2.5, 3.5, 5.0)
#: the assumed V̂ = mean (loss − centre)² (bits²). 7.7: measured on SmolLM2-135M (7.66 at
#: α = 0.001, bench/results/bound_slack_measured.json); 12.6: the upper figure DESIGN.md
#: reports for the same model on another sample.
DEFAULT_SPREADS_BITS2: tuple[float, ...] = (7.7, 12.6)
#: variance of the observations (chunk means of the loss, bits²): 0.69 measured on
#: SmolLM2-135M with S = 1024 (bench/results/bound_slack_measured.json), rounded up
OBSERVATION_VARIANCE_BITS2 = 0.7
#: variance of the chunk means of q at V̂ = 7.66 (measured 6.10); scaled by (V̂/7.66)²
SQUARE_VARIANCE_AT_REFERENCE = 6.1
REFERENCE_SPREAD_BITS2 = 7.66
#: top-k statements only count in the union (K); their statistics: SmolLM2-135M's
#: measured (k → mean, variance, square mean, square variance); other k use the
#: largest measured k not above them (a larger error)
TOP_K_MEASURED: dict[int, tuple[float, float, float, float]] = {
    1: (0.3601, 0.01293, 0.1321, 0.001246),
    10: (0.1356, 0.002425, 0.08190, 0.0007341),
    100: (0.05198, 0.0005270, 0.04081, 0.0002798),
}
#: tokens per byte of text: about 4 bytes per token, typical of 32k-50k BPE vocabularies
#: on English text (SmolLM2's tokenizer gave 0.30 on Python sources and docs:
#: bench/results/sampled.json, 172.6M tokens from 572.2 MB)
DEFAULT_TOKENS_PER_BYTE = 0.25
#: tokens per document assumed where metadata cannot bound a document's bytes (parquet
#: columns with dictionary pages): web-text corpora average several hundred tokens
ASSUMED_DOCUMENT_TOKENS = 700
#: how close the size estimate came to real files (bench/results/plan.json)
ACCURACY_NOTE = (
    "+0.6% to +8.6% above the real file on SmolLM2-135M at 2-8 bits, "
    "+1.5% to +4.9% on toy Llama models"
)
#: the largest n the solver tries (beyond any corpus: 10^16 tokens)
MAX_TOKENS = 10**16

#: compression, end to end (read, quantize, code, write): SmolLM2-135M in 21.0 s on
#: 2 cores = 6.4e6 parameters/s (bench/results/demo.json)
COMPRESS_PARAMETERS_PER_SECOND = 6.4e6
#: GPTQ on CPU, per parameter and calibration token, in thread-seconds: SmolLM2-135M with
#: 32,768 tokens took 280 s on 2 quiet threads, 21 s of it the compression every artifact
#: pays (bench/results/quantize.json, act order). Calibration forward passes dominate at
#: that size; a 7B block's wide Hessians add solve time (one Llama-2-7B block at 4,096
#: tokens: 147 s, 2.7× this rate; same file)
GPTQ_THREAD_SECONDS_PER_PARAMETER_TOKEN = 1.2e-10
#: exact-mode tokenization: 172.6M tokens in 916 s on 2 cores (bench/results/sampled.json)
EXACT_TOKENS_PER_SECOND_PER_CORE = 94_000.0
#: sampled-mode tokenization incl. reading: 59,024 tokens/s per worker (same file)
SAMPLED_TOKENS_PER_SECOND_PER_WORKER = 59_000.0
#: CPU evaluation: 2·N FLOPs per token at 1.0e10 FLOP/s per thread (SmolLM2-135M scored
#: 4096 tokens in 57.4 s on 2 threads with centres and 7 statements: bench/results/demo.json)
CPU_FLOPS_PER_THREAD = 1.0e10
#: GPU evaluation: assumed, not measured here: 2e14 FLOP/s (about 20% of an H100's dense
#: bf16 peak; batching, softmax over the vocabulary and centres take the rest)
GPU_FLOPS = 2.0e14

#: weights simulated to price a (bits, group size): elements and seed
_SIMULATED_ELEMENTS = 1 << 18
_SIMULATED_ELEMENTS_MAX = 1 << 24
_SIMULATION_SEED = 20240726
_FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
_ITEMSIZE = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}
#: what the container does to embedded files (certify/container.py)
_XZ_PRESET = 9 | lzma.PRESET_EXTREME
#: files of a Hub model fetched for a plan: everything but the weights
_HUB_PLAN_PATTERNS = (
    *(p for p in models.HUB_ALLOW_PATTERNS if "safetensors" not in p),
    "model.safetensors.index.json",
)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, eq=False)
class ModelFacts:
    """What a plan knows of a model without reading its weights."""

    resolved: ResolvedModel
    specs: tuple[models.TensorSpec, ...]
    tokenizer: Any
    support_files: dict[str, bytes]
    #: bytes of the weight files (what a run downloads for a Hub model)
    weight_file_bytes: int
    hub: bool


def _architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    return str(architectures[0] if architectures else config.get("model_type", "unknown"))


def _read_config(path: Path, source: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{source} has no config.json",
            hint="a model folder needs config.json and *.safetensors weights",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{source}: cannot read config.json: {error}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{source}: config.json is not a JSON object")
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "unknown")
        raise ModelError(
            f"{source} is already quantized ({method})",
            hint="pass the unquantized (float/bfloat16) checkpoint; certify quantizes it itself",
        )
    return config


def _local_weight_files(directory: Path, source: str) -> tuple[str, ...]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelError(f"{source}: cannot read {index.name}: {error}") from None
        names = tuple(sorted(set(weight_map.values())))
    else:
        names = tuple(sorted(p.name for p in directory.glob("*.safetensors")))
    if not names:
        raise ModelError(
            f"{source} has no *.safetensors weights",
            hint="certify reads only safetensors and never unpickles .bin checkpoints",
        )
    return names


def _gguf_specs(path: Path) -> tuple[list[models.TensorSpec], set[str]]:
    """Tensors of a GGUF file from its header, as transformers will load them (float32)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:
        raise ModelError(f"cannot read {path.name} as GGUF: {error}".replace("\n", " ")) from None
    specs = []
    for tensor in reader.tensors:
        # GGUF lists dimensions fastest-first; transformers' tensors are row-major
        shape = tuple(int(d) for d in reversed([int(d) for d in tensor.shape]))
        specs.append(models.TensorSpec(str(tensor.name), shape, "float32"))
    return specs, {spec.name for spec in specs}


def describe_model(
    source: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
) -> ModelFacts:
    """Config, tensor specs, tokenizer and embedded files of ``source``; no weight is read.

    A local folder: safetensors headers; a ``.gguf`` file: its header (the tensors are
    dequantized to float32 by transformers in a run); a Hub id: everything but the
    weights is downloaded at one commit and the safetensors headers are read by range
    requests (:func:`certify.hub.safetensors_headers`). The run itself still checks the
    architecture; the plan only reads it.
    """
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _describe_gguf(path, source)
    if path.is_dir():
        directory = path.resolve()
        config = _read_config(directory / "config.json", source)
        weight_files = _local_weight_files(directory, source)
        resolved = _resolved(source, "unpinned", directory, config, weight_files)
        specs = models.tensor_specs(resolved)
        weight_bytes = sum((directory / name).stat().st_size for name in weight_files)
        return ModelFacts(
            resolved=resolved,
            specs=tuple(specs),
            tokenizer=load_tokenizer(directory),
            support_files=models.read_support_files(resolved),
            weight_file_bytes=weight_bytes,
            hub=False,
        )
    if path.exists() or source.startswith((".", "/", "~")) or source.lower().endswith(".gguf"):
        raise ModelError(
            f"no such model folder or file: {source}",
            hint="pass an existing folder, a .gguf file, or a Hub id such as org/name",
        )
    folder, commit = hub.download_snapshot(
        source, revision, list(_HUB_PLAN_PATTERNS), endpoint=endpoint, token=token
    )
    config = _read_config(Path(folder) / "config.json", source)
    headers = hub.safetensors_headers(source, commit, endpoint=endpoint, token=token)
    specs = []
    weight_bytes = 0
    for _, name, shape, tag in headers:
        if tag not in models.SAFETENSORS_DTYPES:
            raise ModelError(
                f"tensor {name} of {source} has dtype {tag}, which certify does not read"
            )
        dtype = models.SAFETENSORS_DTYPES[tag]
        specs.append(models.TensorSpec(name, shape, dtype))
        weight_bytes += _numel(shape) * _ITEMSIZE[dtype]
    weight_files = tuple(sorted({file_name for file_name, _, _, _ in headers}))
    resolved = _resolved(source, commit, Path(folder), config, weight_files)
    return ModelFacts(
        resolved=resolved,
        specs=tuple(specs),
        tokenizer=load_tokenizer(folder),
        support_files=models.read_support_files(resolved),
        weight_file_bytes=weight_bytes,
        hub=True,
    )


def _resolved(
    source: str, revision: str, directory: Path, config: dict[str, Any], weights: tuple[str, ...]
) -> ResolvedModel:
    return ResolvedModel(
        source=source,
        revision=revision,
        local_dir=str(directory),
        config=config,
        architecture=_architecture(config),
        weight_files=weights,
        tokenizer_files=tuple(
            name for name in models.SUPPORT_FILE_NAMES if (directory / name).is_file()
        ),
        gguf_file=None,
    )


def _describe_gguf(path: Path, source: str) -> ModelFacts:
    from transformers import AutoConfig, AutoTokenizer

    path = path.resolve()
    specs, _ = _gguf_specs(path)
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as error:
        raise ModelError(
            f"transformers cannot read {source} as GGUF: {error}".replace("\n", " ")
        ) from None
    resolved = ResolvedModel(
        source=source,
        revision="unpinned",
        local_dir=str(path.parent),
        config=config,
        architecture=_architecture(config),
        weight_files=(path.name,),
        tokenizer_files=(),
        gguf_file=path.name,
    )
    return ModelFacts(
        resolved=resolved,
        specs=tuple(specs),
        tokenizer=tokenizer,
        support_files=_saved_tokenizer_files(tokenizer),
        weight_file_bytes=path.stat().st_size,
        hub=False,
    )


def _saved_tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files a run embeds for a GGUF model (models.read_support_files saves the same)."""
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        return {
            name: (Path(scratch) / name).read_bytes()
            for name in models.SUPPORT_FILE_NAMES
            if (Path(scratch) / name).is_file()
        }


def vocab_size_of(config: dict[str, Any]) -> int:
    """V: the config's vocab_size (or its text_config's), as the risk stage reads it."""
    vocab = config.get("vocab_size")
    if vocab is None and isinstance(config.get("text_config"), dict):
        vocab = config["text_config"].get("vocab_size")
    if not isinstance(vocab, int) or vocab < 2:
        raise ModelError("the model config has no vocab_size; the bound needs V")
    return vocab


# --------------------------------------------------------------------------- artifact size


@dataclass(frozen=True)
class QuantizationCost:
    """Entropy (bits) of RTN's coded streams on simulated weights, per element / group."""

    code_bits_per_parameter: float
    scale_bits_per_group: float
    zero_bits_per_group: float
    code_symbols: int
    scale_symbols: int
    zero_symbols: int

    @property
    def side_bits_per_group(self) -> float:
        return self.scale_bits_per_group + self.zero_bits_per_group


def _entropy_bits(symbols: np.ndarray, alphabet: int) -> tuple[float, int]:
    """(plug-in entropy per symbol in bits, distinct symbols) of a stream."""
    counts = np.bincount(symbols.reshape(-1), minlength=alphabet).astype(np.float64)
    present = counts[counts > 0]
    if present.size == 0:
        return 0.0, 0
    p = present / present.sum()
    return float(-(p * np.log2(p)).sum()), int(present.size)


@functools.lru_cache(maxsize=128)
def quantization_cost(
    bits: int,
    group_size: int,
    symmetric: bool = False,
    weights: Literal["normal", "student_t5"] = "normal",
) -> QuantizationCost:
    """What RTN's streams cost per element and per group, measured on simulated weights.

    ``normal``: i.i.d. N(0, 0.02²) weights, the light-tailed end (random-init models; the
    codes fill the group's range, so they compress least); ``student_t5``: heavy-tailed
    Student-t(5) weights of the same variance, as in bench/results/compress.json (a few
    large weights stretch each group's range, so most codes sit near the zero point).
    Trained LLM weights lie in between (docs/PLAN.md). Deterministic (fixed seed);
    2^18 elements or 256 groups, whichever is more.
    """
    elements = min(max(_SIMULATED_ELEMENTS, 256 * group_size), _SIMULATED_ELEMENTS_MAX)
    rng = np.random.default_rng(_SIMULATION_SEED)
    if weights == "normal":
        sample = rng.standard_normal(elements) * 0.02
    elif weights == "student_t5":
        sample = rng.standard_t(5, elements) * (0.02 / math.sqrt(5.0 / 3.0))
    else:
        raise InvalidInputError(f"must be normal or student_t5, got {weights!r}", field="weights")
    q = quantize_tensor(sample.astype(np.float32), bits, group_size, symmetric=symmetric)
    code_bits, code_symbols = _entropy_bits(centered_codes(q), 1 << bits)
    scale_bits, scale_symbols = _entropy_bits(q.scale_codes, 256)
    zero_bits, zero_symbols = (0.0, 0) if symmetric else _entropy_bits(q.zero_points, 1 << bits)
    return QuantizationCost(
        code_bits_per_parameter=code_bits,
        scale_bits_per_group=scale_bits,
        zero_bits_per_group=zero_bits,
        code_symbols=code_symbols,
        scale_symbols=scale_symbols,
        zero_symbols=zero_symbols,
    )


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape))


def _varint_bytes(value: int) -> int:
    return max(1, (max(int(value), 1).bit_length() + 6) // 7)


def _stream_bytes(symbols: int, alphabet: int, present: int, bits_per_symbol: float) -> int:
    """Bytes of one coded stream (docs/FORMAT.md): presence bitmap, LEB128 counts of the
    present symbols, u32 word count, whole 32-bit words of the ANS code."""
    present = max(1, min(present, symbols, alphabet))
    counts = present * _varint_bytes(symbols // present)
    words = 0 if present < 2 else math.ceil(bits_per_symbol * symbols / 32.0)
    return (alphabet + 7) // 8 + counts + 4 + 4 * words


def quantized_payload_bytes(
    shape: Sequence[int], bits: int, group_size: int, symmetric: bool, cost: QuantizationCost
) -> int:
    """Expected bytes of one tensor's ``encode_quantized`` payload at ``cost``."""
    numel = _numel(shape)
    groups = group_count(numel, group_size)
    alphabet = 1 << bits
    size = 12 + 8 * len(shape) + 4  # payload header, dimensions, CRC-32
    size += _stream_bytes(numel, alphabet, cost.code_symbols, cost.code_bits_per_parameter)
    size += _stream_bytes(groups, 256, cost.scale_symbols, cost.scale_bits_per_group)
    if not symmetric:
        size += _stream_bytes(groups, alphabet, cost.zero_symbols, cost.zero_bits_per_group)
    return size


def _is_quantized(spec: models.TensorSpec) -> bool:
    """The container's rule: every floating 2-D matrix is quantized."""
    return spec.dtype in _FLOAT_DTYPES and len(spec.shape) == 2 and min(spec.shape) > 0


def _stored_specs(specs: Sequence[models.TensorSpec], config: dict[str, Any]) -> list[Any]:
    """The specs a run stores: a tied LM head that repeats the embedding is stored once
    (the container aliases identical tensors; tied weights are identical)."""
    if not config.get("tie_word_embeddings", False):
        return list(specs)
    embeddings = [
        spec for spec in specs if "embed_tokens" in spec.name or spec.name.endswith("wte.weight")
    ]
    kept = []
    for spec in specs:
        head = spec.name.endswith("lm_head.weight")
        if head and any(e.shape == spec.shape and e.dtype == spec.dtype for e in embeddings):
            continue
        kept.append(spec)
    return kept


def _header_bytes(
    resolved: ResolvedModel,
    settings: QuantizationSettings,
    entries: list[dict[str, Any]],
    files: list[dict[str, Any]],
    aliases: int,
    parameters: int,
    data_size: int,
) -> int:
    """Bytes of prelude + JSON header + checksum: the header built as the container builds
    it (certify/container.py), with placeholder hashes of the right length."""
    revision = "0" * 40 if len(resolved.revision) == 40 else "sha256:" + "0" * 64
    header = {
        "format": "certz",
        "format_version": FORMAT_VERSION,
        "model": {
            "source": models.public_source(resolved),
            "revision": revision,
            "architecture": resolved.architecture,
            "config": resolved.config,
        },
        "quantization": to_dict(settings),
        "codec": codec_parameters(),
        "libraries": library_versions(),
        "parameters": parameters,
        "files": files,
        "tensors": entries,
        "aliases": [{"name": "model.lm_head.weight", "target": "model.embed_tokens.weight"}]
        * aliases,
        "decoded_weights_sha256": "0" * 64,
        "data_size_bytes": data_size,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return PRELUDE.size + len(text) + CHECKSUM_BYTES


def _support_entries(support_files: dict[str, bytes]) -> tuple[int, list[dict[str, Any]]]:
    """Bytes the embedded files take (xz as the container writes them) and their entries."""
    total, entries, offset = 0, [], 0
    for name in sorted(support_files):
        data = support_files[name]
        packed = lzma.compress(
            data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=_XZ_PRESET
        )
        stored = min(len(packed), len(data))
        entries.append(
            {
                "name": name,
                "compression": "xz" if len(packed) < len(data) else "none",
                "size_bytes": len(data),
                "content_sha256": "0" * 64,
                "offset": offset,
                "length": stored,
                "sha256": "0" * 64,
            }
        )
        offset += stored
        total += stored
    return total, entries


def estimate_artifact(
    facts: ModelFacts,
    settings: QuantizationSettings,
    *,
    support_bytes: tuple[int, list[Any]] | None = None,
) -> PlanArtifact:
    """The expected size of model.certz for ``facts`` at ``settings`` (RTN group-wise).

    Quantized tensors: :func:`quantized_payload_bytes` at the simulated cost of normal
    weights (``size_bytes``) and of Student-t(5) weights (``size_bytes_low``); raw
    tensors: their bytes; embedded files: compressed exactly; header: built like the
    container's. A data-dependent quantizer (GPTQ) changes the codes' statistics; the
    estimate prices RTN.
    """
    config = facts.resolved.config
    specs = _stored_specs(facts.specs, config)
    tied_dropped = len(facts.specs) - len(specs)
    gguf_tied = (
        facts.resolved.gguf_file is not None
        and bool(config.get("tie_word_embeddings", False))
        and not any(spec.name == "output.weight" for spec in specs)
    )
    costs = {
        kind: {
            bits: quantization_cost(bits, settings.group_size, settings.symmetric, kind)
            for bits in (
                {settings.bits, settings.high_precision_bits}
                if settings.high_precision_tensors
                else {settings.bits}
            )
        }
        for kind in ("normal", "student_t5")
    }
    support_total, files = support_bytes or _support_entries(facts.support_files)
    quantized = {"normal": 0, "student_t5": 0}
    raw_bytes = quantized_parameters = raw_parameters = 0
    entries: list[dict[str, Any]] = []
    offset = support_total
    for spec in specs:
        numel = _numel(spec.shape)
        entry: dict[str, Any] = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
        if _is_quantized(spec):
            keep = any(fnmatch.fnmatchcase(spec.name, p) for p in settings.high_precision_tensors)
            bits = settings.high_precision_bits if keep else settings.bits
            sizes = {
                kind: quantized_payload_bytes(
                    spec.shape, bits, settings.group_size, settings.symmetric, costs[kind][bits]
                )
                for kind in quantized
            }
            for kind, size in sizes.items():
                quantized[kind] += size
            quantized_parameters += numel
            length = sizes["normal"]
            entry.update(encoding="quantized", bits=bits)
        else:
            length = numel * _ITEMSIZE.get(spec.dtype, 4)
            raw_bytes += length
            raw_parameters += numel
            entry.update(encoding="raw")
        entry.update(offset=offset, length=length, sha256="0" * 64)
        entries.append(entry)
        offset += length
    parameters = quantized_parameters + raw_parameters
    data_size = support_total + quantized["normal"] + raw_bytes
    header = _header_bytes(
        facts.resolved,
        settings,
        entries,
        files,
        tied_dropped + (1 if gguf_tied else 0),
        parameters,
        data_size,
    )
    size = header + data_size
    size_low = header + support_total + quantized["student_t5"] + raw_bytes
    cost = costs["normal"][settings.bits]
    return PlanArtifact(
        method="rtn-groupwise",
        bits=settings.bits,
        group_size=settings.group_size,
        symmetric=settings.symmetric,
        tensors=len(specs),
        parameters=parameters,
        quantized_parameters=quantized_parameters,
        raw_parameters=raw_parameters,
        code_bits_per_parameter=cost.code_bits_per_parameter,
        side_bits_per_group=cost.side_bits_per_group,
        quantized_bytes=quantized["normal"],
        raw_bytes=raw_bytes,
        support_file_bytes=support_total,
        header_bytes=header,
        size_bytes=size,
        size_bytes_low=size_low,
        bits_per_parameter=8.0 * size / parameters if parameters else 0.0,
        bits_per_parameter_low=8.0 * size_low / parameters if parameters else 0.0,
        weight_file_bytes=facts.weight_file_bytes,
    )


# --------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class DataSurvey:
    """:class:`PlanData` plus what the cost estimate needs of the unit list."""

    data: PlanData
    #: sampled mode, over the expected draws: expected distinct units read, their tokens
    #: and bytes (a unit drawn twice is read and tokenized once)
    units_read: float
    tokens_read: float
    bytes_read: float
    hub: bool


def _unit_tokens(units: UnitList, tokens_per_byte: float, *, sampled: bool) -> np.ndarray:
    """Expected tokens of every unit: τ·bytes + one EOS per document (ASSUMED_DOCUMENT_TOKENS
    per document where the bytes are unknown); in sampled mode capped by the truncation
    and by the unit's weight (n_u ≤ w_u)."""
    documents = units.documents.astype(np.float64)
    text_bytes = units.text_bytes.astype(np.float64)
    estimate = np.where(
        text_bytes >= 0,
        tokens_per_byte * np.maximum(text_bytes, 0.0) + documents,
        (ASSUMED_DOCUMENT_TOKENS + 1.0) * documents,
    )
    if not sampled:
        return estimate
    if units.rule.kind == "truncate" and units.rule.truncation_tokens is not None:
        estimate = np.minimum(estimate, documents * float(units.rule.truncation_tokens))
    return np.minimum(estimate, np.maximum(units.weight.astype(np.float64), 0.0))


def _described(
    data: DataSource,
    units: UnitList,
    documents: int,
    file_bytes: int,
    text_bytes: int | None,
    tokens_per_byte: float,
) -> dict[str, Any]:
    """The PlanData fields both modes fill from the unit list."""
    return {
        "source": data.source,
        "documents": documents,
        "units": len(units),
        "file_bytes": file_bytes,
        "text_bytes": text_bytes,
        "tokens_per_byte": tokens_per_byte,
        "max_documents": data.max_documents,
    }


def survey_data(
    data: DataSource,
    tokenizer: Any,
    *,
    delta: float,
    tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE,
    n_tokens: int | None = None,
    block_lines: int = DEFAULT_BLOCK_LINES,
    token: str | None = None,
    endpoint: str | None = None,
) -> DataSurvey:
    """The dataset from its metadata: units and W (sampled mode, with the weight rule the
    tokenizer allows), or a byte count (exact mode), or n from a token-shard index.

    ``n_tokens`` replaces the estimate of n (``certify plan --tokens``); ``block_lines`` is
    the jsonl lines per unit (the run's default unless a caller changed it). In sampled mode
    the acceptance rate is the estimated n over W, the expected draws G/rate and n_lo
    :func:`certify.bound.n_lower_bound` at those draws with δ_n = δ/10.
    """
    if not 0.0 < tokens_per_byte <= 1.0:
        raise InvalidInputError(
            f"must lie in (0, 1] (a bytes-rule tokenizer makes at most one token per byte), "
            f"got {tokens_per_byte}",
            field="--tokens-per-byte",
        )
    if n_tokens is not None and n_tokens < 1:
        raise InvalidInputError(f"must be at least 1, got {n_tokens}", field="--tokens")
    mode = resolve_mode(data)
    local = Path(data.source).expanduser()
    if is_shard_dir(local):
        shards = open_shards(local, verify_contents=False)
        n = shards.record.n_tokens if n_tokens is None else n_tokens
        plan_data = PlanData(
            source=data.source,
            mode="exact",
            n_tokens=n,
            n_tokens_basis="token_shards" if n_tokens is None else "given",
            martingale_tokens=n,
            documents=shards.record.documents,
            units=None,
            file_bytes=None,
            text_bytes=None,
            total_weight=None,
            weight_rule=None,
            truncation_tokens=None,
            tokens_per_byte=None,
            acceptance_rate=None,
            accepted_units=None,
            chunks_per_unit=None,
            expected_draws=None,
            n_lower_bound=None,
            max_documents=data.max_documents,
        )
        return DataSurvey(plan_data, 0.0, 0.0, 0.0, hub=False)
    if mode == "sampled":
        rule = weight_rule_for(tokenizer, data.truncate_tokens)
    else:  # exact mode counts bytes and documents; the weights are not used
        rule = WeightRule("truncate", 1, 0)
    units = enumerate_units(
        data.source,
        rule,
        text_column=data.text_column,
        extensions=data.extensions,
        exclude=data.exclude,
        decode_errors=data.decode_errors,
        block_lines=block_lines,
        dataset_config=data.config,
        split=data.split,
        revision=data.revision,
        token=token,
        endpoint=endpoint,
    )
    hub_source = units.source.get("kind") == "hub"
    unit_tokens = _unit_tokens(units, tokens_per_byte, sampled=mode == "sampled")
    documents = int(units.documents.sum())
    known_bytes = units.text_bytes >= 0
    text_bytes = int(units.text_bytes[known_bytes].sum()) if known_bytes.all() else None
    file_bytes = sum(entry.size_bytes for entry in units.files)
    estimate = max(1, round(float(unit_tokens.sum())))
    basis: Literal["given", "bytes_estimate"] = "bytes_estimate" if n_tokens is None else "given"
    n = estimate if n_tokens is None else n_tokens
    if mode == "exact":
        if data.max_documents is not None and data.max_documents < documents and n_tokens is None:
            n = max(1, round(n * data.max_documents / documents))
        plan_data = PlanData(
            mode="exact",
            n_tokens=n,
            n_tokens_basis=basis,
            martingale_tokens=n,
            total_weight=None,
            weight_rule=None,
            truncation_tokens=None,
            acceptance_rate=None,
            accepted_units=None,
            chunks_per_unit=None,
            expected_draws=None,
            n_lower_bound=None,
            **_described(data, units, documents, file_bytes, text_bytes, tokens_per_byte),
        )
        return DataSurvey(plan_data, 0.0, 0.0, 0.0, hub=hub_source)
    total_weight = units.total_weight
    positive = units.positive_units
    if data.accepted_units > positive:
        raise InvalidInputError(
            f"{data.accepted_units} accepted units asked of a dataset of {positive} units",
            field="--accepted-units",
            hint=f"pass --accepted-units {positive} or less, or use --data-mode exact",
        )
    n = min(n, total_weight)  # W ≥ n by the weight rule
    rate = n / total_weight
    draws = max(data.accepted_units, math.ceil(data.accepted_units / rate))
    delta_n = delta / DEFAULT_DELTA_N_DIVISOR
    n_lo, _ = n_lower_bound(total_weight, data.accepted_units, draws, delta_n)
    weights = units.weight.astype(np.float64)
    draw_probability = weights / float(total_weight)
    unit_bytes = (units.byte_stop - units.byte_start).astype(np.float64)
    plan_data = PlanData(
        mode="sampled",
        n_tokens=n,
        n_tokens_basis=basis,
        martingale_tokens=n_lo,
        total_weight=total_weight,
        weight_rule=rule.kind,
        truncation_tokens=rule.truncation_tokens,
        acceptance_rate=rate,
        accepted_units=data.accepted_units,
        chunks_per_unit=data.chunks_per_unit,
        expected_draws=draws,
        n_lower_bound=n_lo,
        **_described(data, units, documents, file_bytes, text_bytes, tokens_per_byte),
    )
    scale = n / max(float(unit_tokens.sum()), 1.0)  # --tokens rescales every unit alike
    # P(unit u is drawn at least once in D draws) = 1 − (1 − w_u/W)^D
    read = -np.expm1(draws * np.log1p(-np.minimum(draw_probability, 1.0 - 1e-16)))
    read[draw_probability >= 1.0] = 1.0
    return DataSurvey(
        plan_data,
        units_read=float(read.sum()),
        tokens_read=float((read * unit_tokens).sum()) * scale,
        bytes_read=float((read * unit_bytes).sum()),
        hub=hub_source,
    )


# --------------------------------------------------------------------------- the bound grid


def _top_k_statistics(k: int) -> tuple[float, float, float, float]:
    measured = [key for key in sorted(TOP_K_MEASURED) if key <= k]
    return TOP_K_MEASURED[measured[-1] if measured else 1]


def _feasible(variance: float, mean: float, low: float, high: float, samples: int) -> float:
    """``variance`` capped below what values in [low, high] with this mean allow."""
    if samples < 2:
        return variance
    limit = (mean - low) * (high - mean) * samples / (samples - 1)
    return max(0.0, min(variance, 0.999 * limit))


def scenario_metrics(
    loss_bits: float,
    square_mean: float,
    alphas: Sequence[float],
    top_k: Sequence[int],
    vocab_size: int,
    samples: int,
) -> tuple[MetricSample, ...]:
    """The statistics a run would measure if the model's per-token loss were ``loss_bits``
    (before smoothing) with V̂ = ``square_mean``: for each α the smoothed mean is at most
    loss + log2(1/(1−α)) (since (1−α)p + α/V ≥ (1−α)p), which is used; top-k statements
    take SmolLM2-135M's measured statistics (they only enter the union's K)."""
    metrics = []
    for alpha in alphas:
        low, width = smoothed_loss_range(alpha, vocab_size)
        high = low + width
        mean = min(max(loss_bits - math.log2(1.0 - alpha), low), high)
        squares = min(max(square_mean, 0.0), width * width)
        square_variance = SQUARE_VARIANCE_AT_REFERENCE * (squares / REFERENCE_SPREAD_BITS2) ** 2
        metrics.append(
            MetricSample(
                name="bits",
                alpha=float(alpha),
                sample_mean=mean,
                sample_variance=_feasible(OBSERVATION_VARIANCE_BITS2, mean, low, high, samples),
                samples=samples,
                square_mean=squares,
                square_variance=_feasible(square_variance, squares, 0.0, width * width, samples),
            )
        )
    for k in top_k:
        mean, variance, squares, square_variance = _top_k_statistics(int(k))
        metrics.append(
            MetricSample(
                name="top_k_error",
                k=int(k),
                sample_mean=mean,
                sample_variance=_feasible(variance, mean, 0.0, 1.0, samples),
                samples=samples,
                square_mean=squares,
                square_variance=_feasible(square_variance, squares, 0.0, 1.0, samples),
            )
        )
    return tuple(metrics)


def bound_input_at(template: BoundInput, n_tokens: int, *, sampled: bool) -> BoundInput:
    """``template`` with the martingale n set to ``n_tokens``.

    Exact mode: n_tokens = n. Sampled mode: every martingale term uses n_lo, so the input
    with n_tokens = n_lo, δ' = δ − δ_n and delta_split 1/2 gives the same δ_c = δ_s =
    0.45δ and the same bound (except at n_lo = 1, where sampled mode's Azuma term takes
    the larger of m = 1 and m = 2); tests/test_plan.py checks the two agree.
    """
    if not sampled:
        return dataclasses.replace(template, n_tokens=int(n_tokens), sampled=None, delta_n=None)
    delta_n = (
        template.delta_n
        if template.delta_n is not None
        else (template.delta / DEFAULT_DELTA_N_DIVISOR)
    )
    return dataclasses.replace(
        template,
        n_tokens=int(n_tokens),
        sampled=None,
        delta_n=None,
        delta=template.delta - delta_n,
    )


def _bits_bound(bound_input: BoundInput) -> float:
    value = compute_bound(bound_input).summary["bits_per_token_bound"]
    if value is None:
        raise UsageError("the plan judges the bits bound: give at least one --alphas value")
    return float(value)


# --------------------------------------------------------------------------- cost


def estimate_cost(
    artifact: PlanArtifact,
    survey: DataSurvey,
    evaluation: EvaluationSettings,
    *,
    evaluation_tokens: int,
    model_on_hub: bool,
    threads: int,
    workers: int,
    configurations: int = 1,
    gptq_configurations: int = 0,
    calibration_tokens: int = 0,
) -> PlanCost:
    """Tokens, bytes and seconds of the run at the documented rates (module constants).

    ``gptq_configurations`` of the ``configurations`` are quantized with GPTQ on
    ``calibration_tokens`` tokens, priced on CPU (a GPU is far faster; not measured here).
    """
    data = survey.data
    threads = max(1, threads)
    workers = max(1, workers)
    if data.n_tokens_basis == "token_shards":
        tokens, seconds, units_read, bytes_read = 0, 0.0, None, 0
    elif data.mode == "exact":
        tokens = data.n_tokens
        seconds = tokens / (EXACT_TOKENS_PER_SECOND_PER_CORE * threads)
        units_read, bytes_read = data.units, int(data.file_bytes or 0)
    else:
        tokens = round(survey.tokens_read)
        seconds = tokens / (SAMPLED_TOKENS_PER_SECOND_PER_WORKER * workers)
        units_read = round(survey.units_read)
        bytes_read = round(survey.bytes_read)
    flops = 2.0 * artifact.parameters * evaluation_tokens * configurations
    return PlanCost(
        compress_seconds=configurations * artifact.parameters / COMPRESS_PARAMETERS_PER_SECOND
        + gptq_configurations
        * artifact.parameters
        * calibration_tokens
        * GPTQ_THREAD_SECONDS_PER_PARAMETER_TOKEN
        / threads,
        tokens_tokenized=tokens,
        tokenize_seconds=seconds,
        units_read=units_read,
        bytes_read=bytes_read,
        dataset_download_bytes=bytes_read if survey.hub else 0,
        model_download_bytes=artifact.weight_file_bytes if model_on_hub else 0,
        evaluation_tokens=evaluation_tokens * configurations,
        evaluate_seconds_cpu=flops / (CPU_FLOPS_PER_THREAD * threads),
        evaluate_seconds_gpu=flops / GPU_FLOPS,
        cpu_threads=threads,
        tokenizer_workers=workers,
    )


# --------------------------------------------------------------------------- the plan


def _evaluation_shape(
    data: PlanData, evaluation: EvaluationSettings
) -> tuple[int, SamplingMethod, int]:
    """(s observations, sampling method, tokens the model reads) of the run."""
    per_chunk = 1 + evaluation.context_tokens + evaluation.chunk_tokens
    if data.mode == "sampled":
        samples = int(data.accepted_units or 1)
        chunks = samples * int(data.chunks_per_unit or 1)
        return samples, "bernstein", chunks * per_chunk
    if evaluation.exhaustive:
        documents = data.documents or 1
        chunks = math.ceil(data.n_tokens / evaluation.chunk_tokens) + documents
        tokens = data.n_tokens + chunks * (1 + evaluation.context_tokens)
        return max(chunks, 1), "exhaustive", tokens
    return evaluation.samples, "bernstein", evaluation.samples * per_chunk


def _assumptions(
    plan_data: PlanData, losses: Sequence[float], spreads: Sequence[float], gptq: bool = False
) -> tuple[str, ...]:
    notes = [
        "artifact size: RTN group-wise codes priced by their entropy on simulated weights "
        "(normal: the estimate; Student-t(5): the low end), plus payload framing, raw "
        "tensors, the embedded files (compressed exactly) and the header; measured "
        f"{ACCURACY_NOTE} (docs/PLAN.md)",
        f"losses {', '.join(f'{x:g}' for x in losses)} bits/token and V̂ "
        f"{', '.join(f'{x:g}' for x in spreads)} bits² are assumptions, not measurements of "
        "this model (defaults: SmolLM2-135M, bench/results/bound_slack_measured.json); "
        "the smoothed mean at α is taken as loss + log2(1/(1−α)), its upper limit",
        f"observation variance {OBSERVATION_VARIANCE_BITS2} bits² and top-k statistics "
        "measured on SmolLM2-135M",
        f"evaluation at 2·N FLOPs per token: CPU {CPU_FLOPS_PER_THREAD:.1e} FLOP/s per thread "
        f"(measured, bench/results/demo.json), GPU {GPU_FLOPS:.0e} FLOP/s (assumed)",
    ]
    if gptq:
        notes.append(
            f"GPTQ at {GPTQ_THREAD_SECONDS_PER_PARAMETER_TOKEN:.1e} CPU thread-seconds per "
            "parameter and calibration token (measured on SmolLM2-135M; wide 7B Hessians "
            "take about 2.7× longer per token; a GPU is far faster), the file priced as RTN's"
        )
    if plan_data.n_tokens_basis == "bytes_estimate":
        notes.append(
            f"n estimated as {plan_data.tokens_per_byte:g} tokens per byte of text plus one "
            f"EOS per document ({ASSUMED_DOCUMENT_TOKENS} tokens per document where the "
            "bytes are unknown); pass --tokens N if you know n"
        )
    if plan_data.mode == "sampled":
        notes.append(
            "sampled mode: acceptance rate = estimated n / W; expected draws D = G/rate; "
            "n_lo = W·Beta⁻¹(δ_n; G, D−G+1) at those draws"
        )
    return tuple(notes)


def make_plan(
    facts: ModelFacts,
    data: DataSource,
    evaluation: EvaluationSettings,
    quantization: QuantizationSettings,
    *,
    delta: float = 0.05,
    heldout: bool = False,
    hyperparameter_configurations: int = 1,
    gptq_configurations: int = 0,
    calibration_tokens: int = 0,
    auto_grid: Sequence[tuple[int, int]] = (),
    losses: Sequence[float] = DEFAULT_LOSSES_BITS,
    spreads: Sequence[float] = DEFAULT_SPREADS_BITS2,
    target_bits: float | None = None,
    tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE,
    n_tokens: int | None = None,
    threads: int = 1,
    workers: int = 1,
    token: str | None = None,
    endpoint: str | None = None,
) -> Plan:
    """The plan of a run of ``facts`` on ``data``: size, data, bound grid, needed n, cost.

    With ``auto_grid`` (``--bits auto``) the artifact is the grid's smallest and
    ``hyperparameter_configurations`` its length (the run counts every configuration);
    ``gptq_configurations`` of them run GPTQ on ``calibration_tokens`` tokens.
    """
    if not evaluation.alphas:
        raise UsageError("the plan judges the bits bound: give at least one --alphas value")
    if not losses or not spreads:
        raise InvalidInputError("give at least one loss and one spread", field="--losses")
    for value in (*losses, *spreads):
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"must be finite and ≥ 0, got {value}", field="--losses")
    if target_bits is not None and not (math.isfinite(target_bits) and target_bits > 0):
        raise InvalidInputError(
            f"must be a positive number, got {target_bits}", field="--target-bits"
        )
    vocab_size = vocab_size_of(facts.resolved.config)
    support = _support_entries(facts.support_files)
    if auto_grid:
        candidates = [
            estimate_artifact(
                facts,
                dataclasses.replace(quantization, bits=bits, group_size=group_size),
                support_bytes=support,
            )
            for bits, group_size in auto_grid
        ]
        artifact = min(candidates, key=lambda candidate: candidate.size_bytes)
        hyperparameter_configurations = max(hyperparameter_configurations, len(auto_grid))
    else:
        artifact = estimate_artifact(facts, quantization, support_bytes=support)
    survey = survey_data(
        data,
        facts.tokenizer,
        delta=delta,
        tokens_per_byte=tokens_per_byte,
        n_tokens=n_tokens,
        token=token,
        endpoint=endpoint,
    )
    plan_data = survey.data
    samples, method, evaluation_tokens = _evaluation_shape(plan_data, evaluation)
    sampled = plan_data.mode == "sampled"
    uniform = math.log2(vocab_size)

    def template(metrics: tuple[MetricSample, ...], size_bytes: int) -> BoundInput:
        return BoundInput(
            vocab_size=vocab_size,
            n_tokens=None if sampled else plan_data.n_tokens,
            size_bytes=size_bytes,
            metrics=metrics,
            hyperparameter_configurations=hyperparameter_configurations,
            delta=delta,
            sampling_method=method,
            heldout=heldout,
            sampled=SampledDraws(
                int(plan_data.total_weight or 0),
                int(plan_data.accepted_units or 0),
                int(plan_data.expected_draws or 0),
            )
            if sampled
            else None,
        )

    # dataset tokens per martingale token: n / n_lo in sampled mode
    inflation = plan_data.n_tokens / plan_data.martingale_tokens if sampled else 1.0

    def dataset_tokens(martingale: int | None) -> int | None:
        return None if martingale is None else math.ceil(martingale * inflation)

    scenarios = []
    for loss in losses:
        for spread in spreads:
            metrics = scenario_metrics(
                loss, spread, evaluation.alphas, evaluation.top_k, vocab_size, samples
            )
            base = template(metrics, artifact.size_bytes)
            result = compute_bound(base)
            bits = [metric for metric in result.metrics if metric.name == "bits"]
            best = min(bits, key=lambda metric: metric.bound)

            def bound_at(n: int, base: BoundInput = base) -> float:
                return _bits_bound(bound_input_at(base, n, sampled=sampled))

            scenarios.append(
                PlanScenario(
                    loss_bits=float(loss),
                    square_mean=float(spread),
                    bounds=tuple(
                        PlanBound(
                            alpha=float(metric.alpha or 0.0),
                            sample_mean=metric.sample_mean,
                            bound=metric.bound,
                            certified_by=metric.certified_by,
                        )
                        for metric in bits
                    ),
                    bits_bound=best.bound,
                    alpha=float(best.alpha or 0.0),
                    vacuous=best.bound >= uniform,
                    tokens_for_nonvacuous=dataset_tokens(
                        tokens_needed(bound_at, uniform, strict=True, max_tokens=MAX_TOKENS)
                    ),
                    tokens_for_target=None
                    if target_bits is None
                    else dataset_tokens(
                        tokens_needed(bound_at, target_bits, max_tokens=MAX_TOKENS)
                    ),
                )
            )
    optimistic_input = template(
        scenario_metrics(
            min(losses), min(spreads), evaluation.alphas, evaluation.top_k, vocab_size, samples
        ),
        artifact.size_bytes_low,
    )
    optimistic = _bits_bound(optimistic_input)
    cost = estimate_cost(
        artifact,
        survey,
        evaluation,
        evaluation_tokens=evaluation_tokens,
        model_on_hub=facts.hub,
        threads=threads,
        workers=workers,
        configurations=max(1, hyperparameter_configurations) if auto_grid else 1,
        gptq_configurations=gptq_configurations,
        calibration_tokens=calibration_tokens,
    )
    return Plan(
        model=facts.resolved.source,
        architecture=facts.resolved.architecture,
        vocab_size=vocab_size,
        uniform_bits=uniform,
        artifact=artifact,
        data=plan_data,
        cost=cost,
        delta=delta,
        statements=len(evaluation.alphas) + len(evaluation.top_k),
        samples=samples,
        sampling_method=method,
        hyperparameter_configurations=hyperparameter_configurations,
        heldout=heldout,
        alphas=tuple(float(a) for a in evaluation.alphas),
        top_k=tuple(int(k) for k in evaluation.top_k),
        scenarios=tuple(scenarios),
        target_bits=target_bits,
        best_bits_bound=min(s.bits_bound for s in scenarios),
        optimistic_bits_bound=optimistic,
        can_be_nonvacuous=optimistic < uniform,
        assumptions=_assumptions(plan_data, losses, spreads, gptq=gptq_configurations > 0),
    )
