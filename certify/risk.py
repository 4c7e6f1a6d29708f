"""Token-level risk: the losses of a model on chunks of a tokenized dataset.

The definition is DESIGN.md "The bound": the token stream x_1..x_n is cut into
chunks of S = ``chunk_tokens`` tokens (the last may be shorter). Chunk j is fed as
one BOS token (EOS when the tokenizer has none), the P = ``context_tokens`` tokens
before the chunk, then the chunk; every chunk token is scored, BOS and context never.
The input drops the chunk's last token (its prediction is not scored), so a chunk of
S tokens with P tokens of context is a forward pass of exactly P + S positions.

Per token, from one forward pass: the target's log-probability (float32) and its rank
(the number of vocabulary entries with a *strictly* greater logit, so ties count in
the target's favour). From those, for the whole grid at once:

- bits at smoothing α: −log2((1−α)·p + α/V), float64, V = the model's logits width;
- top-k error: 1 when rank ≥ k.

V is the width of the model's output layer (``config.vocab_size``), which may exceed
``len(tokenizer)`` when the embedding matrix is padded: the model's distribution is a
softmax over every row, so the smoothed predictor mixes with the uniform law over all V
outputs, and the bound uses the same V.

Hidden states, not logits: the model's base (``model.base_model``, e.g. ``LlamaModel``
or ``GPT2Model``) gives the final hidden states (after the final norm) and the output
layer (``model.get_output_embeddings()``, an ``nn.Linear``) is applied per block of
rows (and, when the vocabulary is huge, per slice of the vocabulary with a streaming
log-sum-exp), so full ``[batch, seq, V]`` logits never exist. Models whose logits are
more than ``lm_head(hidden)`` (soft-capping, logit scaling) are detected by comparing
both paths once on a short input and then evaluated from the full logits instead.

Evaluation is deterministic for a seed: chunks are drawn by ``certify.data``, each
distinct chunk is evaluated once (a chunk drawn twice counts twice), batches are a
fixed plan of equal-shape chunks, and aggregation runs in chunk order. Results are
checkpointed per batch (docs/RISK.md), so an interrupted run resumes with identical
numbers. Under ``torchrun`` each rank evaluates every world-size-th batch of the plan and
the per-chunk results are gathered before aggregation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from certify._files import write_text_atomic
from certify._jcs import schema_error
from certify.errors import DataError, EvaluationError, InvalidInputError, ModelError
from certify.records import (
    DatasetRecord,
    EvaluationSettings,
    MetricSample,
    RiskRecord,
    SamplingRecord,
    to_dict,
)

if TYPE_CHECKING:
    import torch

#: version of the risk JSON (``risk_to_dict``), stored as ``evaluation.format_version``
RISK_FORMAT_VERSION = 1
#: first line of a checkpoint file, and its version
CHECKPOINT_FORMAT = "certify-risk-checkpoint"
CHECKPOINT_VERSION = 1
#: tokens per forward pass on CPU when the batch size is automatic
CPU_BATCH_TOKENS = 8192
#: first guess of tokens per forward pass on CUDA/MPS; halved on out-of-memory
GPU_BATCH_TOKENS = 65536
#: float32 logits held at once: rows x vocabulary slice (256 MiB on CPU, 512 MiB on GPU),
#: twice (logits and comparisons); large blocks read the output layer fewer times
CPU_LOGIT_ELEMENTS = 1 << 26
GPU_LOGIT_ELEMENTS = 1 << 27
#: fewest rows per logits block before the vocabulary itself is sliced
MIN_ROWS_PER_BLOCK = 64

ProgressCallback = Callable[[int, int], None]


class TokenSource(Protocol):
    """What ``evaluate`` reads: ``certify.data.TokenShards`` or any array-backed stand-in."""

    @property
    def n_tokens(self) -> int: ...

    @property
    def record(self) -> DatasetRecord: ...

    def read(self, start: int, stop: int) -> np.ndarray: ...


# --------------------------------------------------------------------------- device


def pick_device() -> str:
    """The best available device: ``"cuda"``, then ``"mps"``, then ``"cpu"``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}
_DTYPES.update({"float32": "float32", "fp32": "float32"})


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """``dtype`` as a torch dtype; ``"auto"`` is bf16 on a GPU and fp32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device.split(":")[0] == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise InvalidInputError(
            f"unknown dtype {dtype!r}; expected auto, bfloat16, float16 or float32",
            field="dtype",
        )
    return getattr(torch, _DTYPES[dtype])  # type: ignore[no-any-return]


def resolve_device(device: str) -> str:
    """``device`` with ``"auto"`` replaced by :func:`pick_device`."""
    return pick_device() if device == "auto" else device


# --------------------------------------------------------------------------- core math


#: widest vocabulary slice whose 0/1 comparison counts sum exactly in float32
_MAX_EXACT_SLICE = 1 << 24


class _Workspace:
    """Two reusable float32 buffers of ``rows x width``: fresh logits, and comparisons.

    Reusing them for every block avoids allocating (and page-faulting) tens of MB per
    operation, which dominates the CPU time of the log-softmax otherwise.
    """

    def __init__(self, rows: int, width: int, device: torch.device) -> None:
        import torch

        self.logits = torch.empty(rows * width, dtype=torch.float32, device=device)
        self.flags = torch.empty(rows * width, dtype=torch.float32, device=device)

    def view(self, buffer: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        return buffer[: rows * width].view(rows, width)


def _stream_logprob_and_rank(
    columns: Callable[[int, int, torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    vocab_size: int,
    vocab_slice: int,
    workspace: _Workspace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target log-probability and rank from logits produced slice by slice.

    ``columns(lo, hi, out)`` writes float32 logits of vocabulary entries ``lo:hi`` of
    every row into ``out`` (which is then overwritten here). With one slice the logits
    are computed once; with several, a first pass keeps a running log-sum-exp and picks
    the target's logit out of the same numbers the rank is compared against, and a second
    pass counts strictly greater logits. Counts are sums of 0/1 floats, exact below 2^24.
    """
    import torch

    rows = int(targets.shape[0])
    if vocab_slice >= vocab_size:
        logits = columns(0, vocab_size, workspace.view(workspace.logits, rows, vocab_size))
        target_logit = logits.gather(1, targets[:, None])
        # rank first: the log-sum-exp below overwrites ``logits``
        flags = workspace.view(workspace.flags, rows, vocab_size)
        rank = torch.gt(logits, target_logit, out=flags).sum(dim=-1)
        peak = logits.amax(dim=-1, keepdim=True)
        log_normaliser = peak.squeeze(1) + torch.log(logits.sub_(peak).exp_().sum(dim=-1))
        return target_logit.squeeze(1) - log_normaliser, rank.long()
    running_max = torch.full((rows,), -math.inf, dtype=torch.float32, device=targets.device)
    running_sum = torch.zeros(rows, dtype=torch.float32, device=targets.device)
    target_logit = torch.zeros(rows, dtype=torch.float32, device=targets.device)
    for lo in range(0, vocab_size, vocab_slice):
        hi = min(lo + vocab_slice, vocab_size)
        logits = columns(lo, hi, workspace.view(workspace.logits, rows, hi - lo))
        inside = (targets >= lo) & (targets < hi)
        local = (targets - lo).clamp(0, hi - lo - 1)
        picked = logits.gather(1, local[:, None]).squeeze(1)
        target_logit = torch.where(inside, picked, target_logit)
        new_max = torch.maximum(running_max, logits.amax(dim=-1))
        shifted = logits.sub_(new_max[:, None]).exp_()
        running_sum = running_sum * torch.exp(running_max - new_max) + shifted.sum(dim=-1)
        running_max = new_max
    log_normaliser = running_max + torch.log(running_sum)
    rank = torch.zeros(rows, dtype=torch.int64, device=targets.device)
    for lo in range(0, vocab_size, vocab_slice):
        hi = min(lo + vocab_slice, vocab_size)
        logits = columns(lo, hi, workspace.view(workspace.logits, rows, hi - lo))
        flags = workspace.view(workspace.flags, rows, hi - lo)
        rank += torch.gt(logits, target_logit[:, None], out=flags).sum(dim=-1).long()
    return target_logit - log_normaliser, rank


def _block_plan(vocab_size: int, logit_elements: int, vocab_slice: int | None) -> tuple[int, int]:
    """(rows per block, vocabulary slice) keeping float32 logits under ``logit_elements``."""
    if vocab_slice is None:
        full_rows = logit_elements // vocab_size
        vocab_slice = (
            vocab_size
            if full_rows >= MIN_ROWS_PER_BLOCK
            else max(1, logit_elements // MIN_ROWS_PER_BLOCK)
        )
    vocab_slice = max(1, min(vocab_slice, vocab_size, _MAX_EXACT_SLICE))
    return max(1, logit_elements // vocab_slice), vocab_slice


def _blocked(
    targets: torch.Tensor,
    vocab_size: int,
    vocab_slice: int | None,
    logit_elements: int,
    columns_of_block: Callable[[int, int], Callable[[int, int, torch.Tensor], torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run :func:`_stream_logprob_and_rank` over row blocks and concatenate."""
    import torch

    rows_per_block, vocab_slice = _block_plan(vocab_size, logit_elements, vocab_slice)
    total_rows = int(targets.shape[0])
    if total_rows == 0:
        empty = torch.zeros(0, device=targets.device)
        return empty.float(), empty.long()
    rows_per_block = min(rows_per_block, total_rows)
    workspace = _Workspace(rows_per_block, vocab_slice, targets.device)
    logprobs, ranks = [], []
    for start in range(0, total_rows, rows_per_block):
        stop = min(start + rows_per_block, total_rows)
        logprob, rank = _stream_logprob_and_rank(
            columns_of_block(start, stop),
            targets[start:stop],
            vocab_size,
            vocab_slice,
            workspace,
        )
        logprobs.append(logprob)
        ranks.append(rank)
    return torch.cat(logprobs), torch.cat(ranks)


def logprob_and_rank_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Natural-log probability (float32) and rank of ``targets`` under ``logits`` ``[N, V]``.

    The rank is the number of entries with a strictly greater logit (ties favour the
    target). The log-softmax runs over row blocks and vocabulary slices in float32.
    """

    def columns_of_block(start: int, stop: int) -> Callable[..., torch.Tensor]:
        def columns(lo: int, hi: int, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(logits[start:stop, lo:hi])

        return columns

    return _blocked(targets, int(logits.shape[-1]), vocab_slice, logit_elements, columns_of_block)


def target_logprob_and_rank(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability (float32) and rank of ``targets`` from final hidden states.

    ``hidden`` is ``[N, H]``, ``weight`` the output layer ``[V, H]`` (``bias`` ``[V]``).
    Logits are ``hidden @ weight[lo:hi].T`` computed in the model's dtype (as the model's
    own output layer does) and widened to float32 per block of rows and slice of the
    vocabulary, so memory stays under ``logit_elements`` floats whatever V is.
    """
    import torch
    import torch.nn.functional as functional

    def columns_of_block(start: int, stop: int) -> Callable[..., torch.Tensor]:
        block = hidden[start:stop]

        def columns(lo: int, hi: int, out: torch.Tensor) -> torch.Tensor:
            part = weight[lo:hi]
            if block.dtype == torch.float32 and part.dtype == torch.float32:
                if bias is None:
                    return torch.mm(block, part.T, out=out)
                return torch.addmm(bias[lo:hi].float(), block, part.T, out=out)
            part_bias = None if bias is None else bias[lo:hi]
            return out.copy_(functional.linear(block, part, part_bias))

        return columns

    return _blocked(targets, int(weight.shape[0]), vocab_slice, logit_elements, columns_of_block)


def smoothed_bits(logprob_nats: np.ndarray, alphas: Sequence[float], vocab_size: int) -> np.ndarray:
    """Bits −log2((1−α)·p + α/V) for every α (rows) and token (columns), float64.

    The mixture is a ``logaddexp`` of ``ln(1−α) + ln p`` and ``ln α − ln V``, so tiny
    probabilities keep their precision and ``p = 0`` gives the finite ceiling.
    """
    logprob = np.asarray(logprob_nats, dtype=np.float64)
    alpha = np.asarray(alphas, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore"):
        mixed = np.logaddexp(np.log1p(-alpha) + logprob, np.log(alpha) - math.log(vocab_size))
    return -mixed / math.log(2.0)  # type: ignore[no-any-return]


def topk_errors(rank: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """1.0 where at least k entries beat the target (``rank ≥ k``), per k (rows), float64."""
    ranks = np.asarray(rank, dtype=np.int64)
    return (ranks[None, :] >= np.asarray(ks, dtype=np.int64)[:, None]).astype(np.float64)


# --------------------------------------------------------------------------- model access


class _Scorer:
    """Runs a causal LM on equal-shape batches and returns target log-probs and ranks."""

    def __init__(self, model: Any, logit_elements: int, vocab_slice: int | None) -> None:
        import torch

        self.model = model
        self.logit_elements = logit_elements
        self.vocab_slice = vocab_slice
        self.input_device = model.get_input_embeddings().weight.device
        head = model.get_output_embeddings()
        base = getattr(model, "base_model", None)
        self.head = head if isinstance(head, torch.nn.Linear) else None
        self.base = base if base is not None and base is not model else None
        if self.head is not None:
            self.vocab_size = int(self.head.weight.shape[0])
        else:
            self.vocab_size = int(model.config.vocab_size)
        self.use_hidden = self.head is not None and self.base is not None
        if self.use_hidden and not self._hidden_path_matches():
            self.use_hidden = False

    def _hidden_path_matches(self) -> bool:
        """True when ``lm_head(base(x))`` reproduces ``model(x).logits`` on a probe input."""
        import torch

        ids = torch.arange(8, device=self.input_device)[None, :] % self.vocab_size
        with torch.inference_mode():
            reference = self.model(input_ids=ids, use_cache=False).logits.float()
            hidden = self._hidden(ids)
            assert self.head is not None
            mine = self.head(hidden.to(self.head.weight.device)).float()
        if mine.shape != reference.shape:
            return False
        scale = float(reference.abs().max()) + 1.0
        tolerance = (
            1e-4 if reference.dtype == torch.float32 and hidden.dtype == torch.float32 else 2e-2
        )
        return bool((mine.to(reference.device) - reference).abs().max() <= tolerance * scale)

    def _hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        assert self.base is not None
        output = self.base(input_ids=input_ids, use_cache=False)
        hidden = getattr(output, "last_hidden_state", None)
        return output[0] if hidden is None else hidden  # type: ignore[no-any-return]

    def score(
        self, input_ids: torch.Tensor, first_scored: int, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and ranks of ``targets`` ``[B, L]``, predicted from ``first_scored`` on."""
        length = int(targets.shape[1])
        if self.use_hidden:
            assert self.head is not None
            hidden = self._hidden(input_ids)[:, first_scored : first_scored + length]
            weight = self.head.weight
            flat = hidden.reshape(-1, hidden.shape[-1]).to(weight.device)
            return target_logprob_and_rank(
                flat,
                weight,
                targets.reshape(-1).to(weight.device),
                bias=self.head.bias,
                vocab_slice=self.vocab_slice,
                logit_elements=self.logit_elements,
            )
        logits = self.model(input_ids=input_ids, use_cache=False).logits
        logits = logits[:, first_scored : first_scored + length]
        flat_logits = logits.reshape(-1, logits.shape[-1])
        return logprob_and_rank_from_logits(
            flat_logits,
            targets.reshape(-1).to(flat_logits.device),
            vocab_slice=self.vocab_slice,
            logit_elements=self.logit_elements,
        )


def max_positions(model: Any) -> int | None:
    """The longest input the model's config allows, or None when it does not say."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_fingerprint(model: Any) -> str:
    """A cheap identity of a model's weights: sha256 of names, shapes, dtypes and sums.

    Used to key checkpoints when the caller has no hash of the weights (the pipeline
    passes the artifact's ``decoded_weights_sha256`` instead).
    """
    import torch

    digest = hashlib.sha256()
    with torch.inference_mode():
        for name, tensor in model.state_dict().items():
            values = tensor.detach().double() if tensor.is_floating_point() else tensor.detach()
            flat = values.reshape(-1)
            summary = (
                name,
                tuple(tensor.shape),
                str(tensor.dtype),
                float(flat.sum()) if flat.numel() else 0.0,
                float((flat * flat).sum()) if flat.numel() else 0.0,
                [float(v) for v in flat[:8].tolist()],
            )
            digest.update(repr(summary).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- plan + checkpoint


@dataclasses.dataclass(frozen=True)
class _ChunkLayout:
    chunk: int
    start: int  # first scored token
    stop: int  # one past the last scored token
    context: int  # context tokens before ``start`` in the input

    @property
    def scored(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple[int, int]:
        return (self.context, self.scored)


def _layouts(
    chunks: Iterable[int], n_tokens: int, chunk_tokens: int, context_tokens: int
) -> list[_ChunkLayout]:
    from certify import data

    layouts = []
    for chunk in chunks:
        start, stop = data.chunk_span(int(chunk), n_tokens, chunk_tokens)
        layouts.append(_ChunkLayout(int(chunk), start, stop, min(start, context_tokens)))
    return layouts


def _plan(
    layouts: Sequence[_ChunkLayout], batch_size: int | None, batch_tokens: int
) -> list[list[_ChunkLayout]]:
    """Batches of chunks of one shape, in a fixed order (shape, then chunk index)."""
    groups: dict[tuple[int, int], list[_ChunkLayout]] = {}
    for layout in layouts:
        groups.setdefault(layout.shape, []).append(layout)
    batches: list[list[_ChunkLayout]] = []
    for shape in sorted(groups):
        members = sorted(groups[shape], key=lambda item: item.chunk)
        length = shape[0] + shape[1]
        per_batch = batch_size if batch_size is not None else max(1, batch_tokens // length)
        for offset in range(0, len(members), per_batch):
            batches.append(members[offset : offset + per_batch])
    return batches


def checkpoint_key(model_identity: str, shards_sha256: str, settings: EvaluationSettings) -> str:
    """sha256 naming one evaluation: the weights, the data and every setting."""
    payload = {
        "model": model_identity,
        "data": shards_sha256,
        "settings": to_dict(settings),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_checkpoint(path: Path, key: str) -> tuple[int | None, dict[int, list[float]]]:
    """(batch tokens, chunk -> [scored, sums...]) from a checkpoint; empty if absent.

    A last line without its newline was cut by an interruption and is ignored.
    """
    if not path.exists():
        return None, {}
    lines = path.read_text(encoding="utf-8").split("\n")
    complete = lines[:-1]  # the text after the last newline is partial (or empty)
    if not complete:
        return None, {}
    try:
        header = json.loads(complete[0])
    except json.JSONDecodeError as error:
        raise EvaluationError(
            f"checkpoint {path} has an unreadable header ({error}); delete it to start over"
        ) from error
    if header.get("format") != CHECKPOINT_FORMAT or header.get("version") != CHECKPOINT_VERSION:
        raise EvaluationError(
            f"{path} is not a certify risk checkpoint of version {CHECKPOINT_VERSION}; "
            "choose another --checkpoint path"
        )
    if header.get("key") != key:
        raise EvaluationError(
            f"checkpoint {path} belongs to another model, dataset or settings; "
            "delete it or choose another --checkpoint path"
        )
    results: dict[int, list[float]] = {}
    for line in complete[1:]:
        if not line:
            continue
        entry = json.loads(line)
        for chunk, values in zip(entry["chunks"], entry["results"], strict=True):
            results[int(chunk)] = [float(value) for value in values]
    batch_tokens = header.get("batch_tokens")
    return (int(batch_tokens) if batch_tokens is not None else None), results


def _start_checkpoint(path: Path, key: str, batch_tokens: int) -> None:
    """Write a fresh checkpoint holding only its header (temp file, then ``os.replace``)."""
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "key": key,
        "batch_tokens": batch_tokens,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(header) + "\n")


def _append_checkpoint(path: Path, chunks: list[int], results: list[list[float]]) -> None:
    """Append one batch as one line; a torn last line is dropped on reading."""
    line = json.dumps({"chunks": chunks, "results": results}) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------- evaluate


def _distributed() -> tuple[int, int]:
    """(rank, world size) under an initialised torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def _check_settings(settings: EvaluationSettings) -> None:
    if settings.chunk_tokens < 1:
        raise InvalidInputError("must be at least 1", field="chunk_tokens")
    if settings.context_tokens < 0:
        raise InvalidInputError("must be 0 or more", field="context_tokens")
    if not settings.exhaustive and settings.samples < 1:
        raise InvalidInputError("must be at least 1 (or use exhaustive mode)", field="samples")
    if not settings.alphas and not settings.top_k:
        raise InvalidInputError("no loss requested: give at least one alpha or top-k")
    for alpha in settings.alphas:
        if not 0.0 < alpha < 1.0:
            raise InvalidInputError(f"{alpha} is outside (0, 1)", field="alphas")
    for k in settings.top_k:
        if k < 1:
            raise InvalidInputError(f"{k} must be at least 1", field="top_k")
    if settings.batch_size is not None and settings.batch_size < 1:
        raise InvalidInputError("must be at least 1, or None for automatic", field="batch_size")


def _chunk_results(
    batch: Sequence[_ChunkLayout],
    logprob: np.ndarray,
    rank: np.ndarray,
    settings: EvaluationSettings,
    vocab_size: int,
) -> list[list[float]]:
    """Per chunk: [scored tokens, sum of bits per α..., sum of top-k errors per k...]."""
    length = batch[0].scored
    logprob = logprob.reshape(len(batch), length)
    rank = rank.reshape(len(batch), length)
    finite = np.isfinite(logprob).all(axis=1)
    if not finite.all():
        bad = batch[int(np.argmin(finite))]
        raise EvaluationError(
            f"chunk {bad.chunk} (tokens {bad.start}..{bad.stop - 1}) gave non-finite "
            "log-probabilities; the weights or the dtype overflow (try --dtype float32)"
        )
    bits = smoothed_bits(logprob.reshape(-1), settings.alphas, vocab_size)
    errors = topk_errors(rank.reshape(-1), settings.top_k)
    bit_sums = bits.reshape(len(settings.alphas), len(batch), length).sum(axis=2)
    error_sums = errors.reshape(len(settings.top_k), len(batch), length).sum(axis=2)
    return [
        [float(length), *bit_sums[:, row].tolist(), *error_sums[:, row].tolist()]
        for row in range(len(batch))
    ]


def _batch_inputs(
    batch: Sequence[_ChunkLayout], shards: TokenSource, bos_token_id: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(input ids ``[B, context + scored]``, targets ``[B, scored]``) of one batch."""
    context, scored = batch[0].shape
    inputs = np.empty((len(batch), context + scored), dtype=np.int64)
    targets = np.empty((len(batch), scored), dtype=np.int64)
    for row, layout in enumerate(batch):
        tokens = np.asarray(shards.read(layout.start - context, layout.stop), dtype=np.int64)
        inputs[row, 0] = bos_token_id
        inputs[row, 1:] = tokens[:-1]
        targets[row] = tokens[context:]
    if targets.size and (targets.min() < 0 or targets.max() >= vocab_size):
        raise DataError(
            f"token ids up to {int(targets.max())} but the model has {vocab_size} outputs; "
            "the shards were made with another tokenizer (re-run certify tokenize)"
        )
    return inputs, targets


def _probe_batch_tokens(scorer: _Scorer, length: int, start_tokens: int) -> int:
    """Largest power-of-two fraction of ``start_tokens`` whose batch fits on the GPU."""
    import torch

    tokens = max(length, start_tokens)
    while True:
        rows = max(1, tokens // length)
        try:
            ids = torch.zeros((rows, length), dtype=torch.int64, device=scorer.input_device)
            with torch.inference_mode():  # every position scored: the real memory peak
                scorer.score(ids, 0, ids)
            del ids
            return tokens
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if rows == 1:
                raise EvaluationError(
                    f"one sequence of {length} tokens does not fit in GPU memory; "
                    "use a smaller --chunk-tokens/--context-tokens or --device-map auto"
                ) from None
            tokens //= 2


def evaluate(
    model: Any,
    shards: TokenSource,
    settings: EvaluationSettings,
    *,
    bos_token_id: int,
    tokenizer: Any = None,
    progress: ProgressCallback | None = None,
    checkpoint_path: str | Path | None = None,
    model_identity: str | None = None,
    vocab_slice: int | None = None,
) -> RiskRecord:
    """Measure the losses of ``model`` on chunks of ``shards`` (DESIGN.md "The bound").

    ``model`` is a transformers causal LM already on its device(s) and in its dtype
    (``settings.device``/``dtype`` are for loading it, see :func:`load_for_evaluation`).
    ``bos_token_id`` starts every input (pass EOS when the tokenizer has no BOS). With
    ``tokenizer`` the shards' tokenizer hash is checked first. ``progress(done, total)``
    counts scored tokens. ``checkpoint_path`` keeps per-batch results so that a rerun
    after an interruption skips them and returns identical numbers; the checkpoint is
    keyed by ``model_identity`` (default: :func:`model_fingerprint`), the shards' sha256
    and ``settings``. Returns per-metric sample means and unbiased variances of the
    per-chunk mean losses; in exhaustive mode the mean is token-weighted, i.e. the risk
    over the whole dataset.
    """
    import torch

    from certify import data

    _check_settings(settings)
    if tokenizer is not None:
        data.check_tokenizer(shards, tokenizer)  # type: ignore[arg-type]
    n_tokens = int(shards.n_tokens)
    if n_tokens == 0:
        raise DataError("the dataset has no tokens; tokenize a non-empty source")
    if n_tokens < settings.chunk_tokens:
        raise DataError(
            f"the dataset has {n_tokens} tokens, fewer than one chunk of "
            f"{settings.chunk_tokens}; use --chunk-tokens {n_tokens} or less, or more data"
        )
    positions = max_positions(model)
    window = settings.chunk_tokens + settings.context_tokens
    if positions is not None and window > positions:
        raise InvalidInputError(
            f"chunk_tokens + context_tokens = {window} exceeds the model's {positions} "
            "positions; lower --chunk-tokens or --context-tokens"
        )

    if settings.exhaustive:
        drawn = np.asarray(data.all_chunks(n_tokens, settings.chunk_tokens), dtype=np.int64)
    else:
        drawn = np.asarray(
            data.sample_chunks(n_tokens, settings.chunk_tokens, settings.samples, settings.seed),
            dtype=np.int64,
        )
    distinct, multiplicity = np.unique(drawn, return_counts=True)
    layouts = _layouts(distinct.tolist(), n_tokens, settings.chunk_tokens, settings.context_tokens)

    device = str(model.get_input_embeddings().weight.device)
    on_gpu = not device.startswith("cpu")
    scorer = _Scorer(model, GPU_LOGIT_ELEMENTS if on_gpu else CPU_LOGIT_ELEMENTS, vocab_slice)
    rank, world = _distributed()

    key = None
    path = None
    done: dict[int, list[float]] = {}
    batch_tokens: int | None = None
    if checkpoint_path is not None:
        identity = model_identity or model_fingerprint(model)
        key = checkpoint_key(identity, shards.record.shards_sha256, settings)
        path = Path(checkpoint_path)
        if world > 1:
            path = path.with_name(f"{path.name}.rank{rank}-of-{world}")
        batch_tokens, done = _read_checkpoint(path, key)
    if batch_tokens is None:
        if settings.batch_size is not None:
            batch_tokens = settings.batch_size * window
        elif device.startswith("cuda"):
            longest = max(layout.context + layout.scored for layout in layouts)
            batch_tokens = _probe_batch_tokens(scorer, longest, GPU_BATCH_TOKENS)
        else:
            batch_tokens = CPU_BATCH_TOKENS if not on_gpu else GPU_BATCH_TOKENS // 4
        if world > 1:  # every rank must build the same plan
            budgets: list[Any] = [None] * world
            torch.distributed.all_gather_object(budgets, batch_tokens)
            batch_tokens = min(int(value) for value in budgets)
    if path is not None and key is not None and not done:
        _start_checkpoint(path, key, batch_tokens)

    plan = _plan(layouts, settings.batch_size, batch_tokens)
    mine = plan[rank::world]
    total = sum(layout.scored for batch in mine for layout in batch)
    finished = sum(layout.scored for batch in mine for layout in batch if layout.chunk in done)
    if progress is not None:
        progress(finished, total)

    started = time.perf_counter()
    results: dict[int, list[float]] = {
        layout.chunk: done[layout.chunk]
        for batch in mine
        for layout in batch
        if layout.chunk in done
    }
    model_was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.inference_mode():
            for batch in mine:
                if all(layout.chunk in done for layout in batch):
                    continue
                inputs, targets = _batch_inputs(batch, shards, bos_token_id, scorer.vocab_size)
                logprob, ranks = scorer.score(
                    torch.from_numpy(inputs).to(scorer.input_device),
                    batch[0].context,
                    torch.from_numpy(targets).to(scorer.input_device),
                )
                chunk_values = _chunk_results(
                    batch,
                    logprob.float().cpu().numpy(),
                    ranks.cpu().numpy(),
                    settings,
                    scorer.vocab_size,
                )
                for layout, values in zip(batch, chunk_values, strict=True):
                    results[layout.chunk] = values
                if path is not None:
                    _append_checkpoint(path, [layout.chunk for layout in batch], chunk_values)
                finished += sum(layout.scored for layout in batch)
                if progress is not None:
                    progress(finished, total)
    finally:
        if model_was_training:
            model.train()
    seconds = time.perf_counter() - started

    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = {chunk: values for part in gathered for chunk, values in part.items()}
        spent: list[Any] = [None] * world
        torch.distributed.all_gather_object(spent, seconds)
        seconds = max(float(value) for value in spent)

    metrics = aggregate(
        np.array([results[int(chunk)] for chunk in distinct], dtype=np.float64),
        multiplicity,
        settings,
        n_tokens=n_tokens,
    )
    return RiskRecord(
        vocab_size=scorer.vocab_size,
        n_tokens=n_tokens,
        chunk_tokens=settings.chunk_tokens,
        context_tokens=settings.context_tokens,
        sampling=SamplingRecord(
            method="exhaustive" if settings.exhaustive else "length_proportional_with_replacement",
            samples=len(drawn),
            seed=settings.seed,
        ),
        metrics=metrics,
        device=device,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        tokens_scored=int(sum(layout.scored for layout in layouts)),
        seconds=seconds,
        data=shards.record,
    )


def aggregate(
    per_chunk: np.ndarray,
    multiplicity: np.ndarray,
    settings: EvaluationSettings,
    *,
    n_tokens: int,
) -> tuple[MetricSample, ...]:
    """Metric statistics from per-chunk rows ``[scored, sums...]`` (distinct chunks, in order).

    Sampling: each draw's value is its chunk's mean loss, counted ``multiplicity`` times;
    the mean and the unbiased variance run over the draws. Exhaustive: the mean is
    token-weighted (the dataset's risk R̂); the variance is that of the chunk means.
    """
    scored = per_chunk[:, 0]
    sums = per_chunk[:, 1:]
    means = sums / scored[:, None]
    draws = np.repeat(means, multiplicity, axis=0)
    samples = int(draws.shape[0])
    # exhaustive: token-weighted, i.e. R-hat over the whole stream
    centre = sums.sum(axis=0) / float(n_tokens) if settings.exhaustive else draws.mean(axis=0)
    variance = draws.var(axis=0, ddof=1) if samples > 1 else np.zeros(draws.shape[1])
    metrics: list[MetricSample] = []
    names: list[tuple[str, float | None, int | None]] = [
        ("bits", alpha, None) for alpha in settings.alphas
    ] + [("top_k_error", None, k) for k in settings.top_k]
    for column, (name, alpha, k) in enumerate(names):
        metrics.append(
            MetricSample(
                name=name,  # type: ignore[arg-type]
                sample_mean=float(centre[column]),
                sample_variance=float(variance[column]),
                samples=samples,
                alpha=alpha,
                k=k,
            )
        )
    return tuple(metrics)


# --------------------------------------------------------------------------- JSON


def risk_to_dict(risk: RiskRecord) -> dict[str, Any]:
    """The risk JSON: ``certify bound``'s input (vocab_size, n_tokens, metrics) plus context.

    Keys other than ``vocab_size``, ``n_tokens`` and ``metrics`` are informational and
    ignored by ``certify bound``; the format version is ``evaluation.format_version``.
    """
    from certify import __version__

    metrics = []
    for metric in risk.metrics:
        entry: dict[str, Any] = {"name": metric.name}
        if metric.name == "bits":
            entry["alpha"] = metric.alpha
        else:
            entry["k"] = metric.k
        entry.update(
            sample_mean=metric.sample_mean,
            sample_variance=metric.sample_variance,
            samples=metric.samples,
        )
        metrics.append(entry)
    result: dict[str, Any] = {
        "kind": "risk",
        "certify_version": __version__,
        "vocab_size": risk.vocab_size,
        "n_tokens": risk.n_tokens,
        "metrics": metrics,
        "chunk_tokens": risk.chunk_tokens,
        "context_tokens": risk.context_tokens,
        "sampling": to_dict(risk.sampling),
        "device": risk.device,
        "dtype": risk.dtype,
        "tokens_scored": risk.tokens_scored,
        "seconds": risk.seconds,
        "evaluation": {"format_version": RISK_FORMAT_VERSION},
    }
    if risk.data is not None:
        result["data"] = to_dict(risk.data)
    return result


def validate_risk(document: Any) -> None:
    """Raise InvalidInputError unless ``document`` follows certify/schemas/risk.schema.json."""
    problem = schema_error(document, "risk")
    if problem is not None:
        raise InvalidInputError(
            f"{problem}; expected the JSON written by certify evaluate "
            "(certify/schemas/risk.schema.json)",
            field="risk",
        )


def risk_from_dict(document: dict[str, Any]) -> RiskRecord:
    """Inverse of :func:`risk_to_dict`; validates against the schema first."""
    validate_risk(document)
    try:
        version = document.get("evaluation", {}).get("format_version", RISK_FORMAT_VERSION)
        if version != RISK_FORMAT_VERSION:
            raise InvalidInputError(
                f"risk format version {version} is not supported; expected "
                f"{RISK_FORMAT_VERSION} (re-run certify evaluate)",
                field="evaluation.format_version",
            )
        metrics = tuple(
            MetricSample(
                name=entry["name"],
                sample_mean=float(entry["sample_mean"]),
                sample_variance=float(entry["sample_variance"]),
                samples=int(entry["samples"]),
                alpha=float(entry["alpha"]) if entry.get("alpha") is not None else None,
                k=int(entry["k"]) if entry.get("k") is not None else None,
            )
            for entry in document["metrics"]
        )
        sampling = document["sampling"]
        data = document.get("data")
        return RiskRecord(
            vocab_size=int(document["vocab_size"]),
            n_tokens=int(document["n_tokens"]),
            chunk_tokens=int(document["chunk_tokens"]),
            context_tokens=int(document["context_tokens"]),
            sampling=SamplingRecord(
                method=sampling["method"],
                samples=int(sampling["samples"]),
                seed=int(sampling["seed"]),
            ),
            metrics=metrics,
            device=str(document["device"]),
            dtype=str(document["dtype"]),
            tokens_scored=int(document["tokens_scored"]),
            seconds=float(document["seconds"]),
            data=DatasetRecord(**data) if data is not None else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"not a risk document ({type(error).__name__}: {error}); "
            "expected the JSON written by certify evaluate"
        ) from error


# --------------------------------------------------------------------------- loading


def load_for_evaluation(
    source: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a ``.certz`` file, a model folder or a Hub id.

    A ``.certz`` is decoded by ``certify.container`` (the certificate is about those
    weights); a Hub id is fetched by ``certify.models.resolve_model`` (``endpoint``,
    ``token``). ``device_map="auto"`` spreads a large model over the available GPUs (and
    CPU) with accelerate instead of moving it to one ``device``.
    """
    path = Path(source)
    resolved_device = resolve_device(device)
    torch_dtype = pick_dtype(dtype, resolved_device)
    if path.suffix == ".certz":
        from certify import container

        if not path.is_file():
            raise ModelError(f"{path} does not exist; pass a .certz file or a model folder")
        return container.load_model_and_tokenizer(  # type: ignore[no-any-return]
            path, device=resolved_device, dtype=torch_dtype
        )
    if not path.is_dir():
        from certify.models import resolve_model

        resolved = resolve_model(str(source), endpoint=endpoint, token=token)
        if resolved.gguf_file is not None:
            raise ModelError(
                f"{source} is a GGUF model; evaluate its .certz instead "
                "(certify compress makes one)"
            )
        path = Path(resolved.local_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load a causal LM from {path}: {error}") from error
    if device_map is None:
        model.to(resolved_device)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer


def bos_for(tokenizer: Any) -> int:
    """The token that starts every input: BOS, or EOS when the tokenizer has no BOS."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ModelError("the tokenizer has neither a BOS nor an EOS token; cannot start inputs")
