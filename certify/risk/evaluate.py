"""Evaluate: the losses of a model on windows of a dataset, in named steps.

``evaluate`` = check inputs → draw (the windows) → plan (distinct chunks, batches)
→ resume (checkpoint) → score (forward passes) → gather (torchrun ranks) → record
(aggregate per observation). Each step is a function below; ``score_windows`` runs
resume → score → gather on any window source, so exact mode (token shards) and
sampled mode (drawn units) share everything but the draw.

Determinism: each distinct chunk is scored once (a chunk drawn twice counts twice),
batches are a fixed plan of equal-shape chunks ordered by chunk key, and aggregation
runs in observation order, so a seed gives the same numbers whatever the batch size
(up to float rounding), after a resume, and under torchrun.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from certify.data import all_chunks, check_tokenizer, sample_chunks
from certify.data.windows import (
    DocumentSource,
    TokenSource,
    all_document_chunks,
    document_windows,
    sample_document_chunks,
    stream_windows,
    windows_sha256,
)
from certify.errors import DataError, EvaluationError, InvalidInputError
from certify.records import (
    EvaluationSettings,
    MetricSample,
    RiskRecord,
    SampledDataRecord,
    SamplingRecord,
    to_dict,
)
from certify.risk.checkpoint import (
    append_checkpoint,
    checkpoint_key,
    read_checkpoint,
    start_checkpoint,
)
from certify.risk.scoring import (
    CPU_LOGIT_ELEMENTS,
    GPU_LOGIT_ELEMENTS,
    V1_RULES,
    Scorer,
    TokenRules,
    max_positions,
    model_fingerprint,
    smoothed_bits,
    topk_errors,
)
from certify.streams import Stream, child_generator, derive_seed

__all__ = [
    "CPU_BATCH_TOKENS",
    "GPU_BATCH_TOKENS",
    "ScoredWindows",
    "WindowSource",
    "aggregate",
    "evaluate",
    "evaluate_sampled",
    "score_windows",
]

#: tokens per forward pass on CPU when the batch size is automatic
CPU_BATCH_TOKENS = 8192
#: first guess of tokens per forward pass on CUDA/MPS; halved on out-of-memory
GPU_BATCH_TOKENS = 65536

ProgressCallback = Callable[[int, int], None]


class WindowSource(Protocol):
    """Windows to score (``certify.records.TokenWindows`` or ``data.windows.StreamWindows``)."""

    @property
    def count(self) -> int: ...

    @property
    def context_tokens(self) -> np.ndarray: ...

    @property
    def observation(self) -> np.ndarray: ...

    @property
    def chunk_ids(self) -> np.ndarray: ...

    def scored_tokens(self) -> np.ndarray: ...

    def window(self, j: int) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class ScoredWindows:
    """Per-window results: rows ``[scored, sum of bits per α..., sum of errors per k...]``."""

    rows: np.ndarray
    device: str
    dtype: str
    vocab_size: int
    tokens_scored: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Chunk:
    key: int  # index of the chunk among the distinct chunk ids (sorted)
    window: int  # a window that holds it
    context: int
    scored: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.context, self.scored)


# --------------------------------------------------------------------------- check + draw


def _check_inputs(model: Any, source: TokenSource, settings: EvaluationSettings) -> int:
    """n, after refusing an empty or too-short stream and windows the model cannot take."""
    n_tokens = int(source.n_tokens)
    if n_tokens == 0:
        raise DataError("the dataset has no tokens; tokenize a non-empty source")
    if settings.bound_version == 1 and n_tokens < settings.chunk_tokens:
        raise DataError(
            f"the dataset has {n_tokens} tokens, fewer than one chunk of "
            f"{settings.chunk_tokens}; use --chunk-tokens {n_tokens} or less, or more data"
        )
    _check_window_fits(model, settings)
    return n_tokens


def _check_window_fits(model: Any, settings: EvaluationSettings) -> None:
    positions = max_positions(model)
    window = settings.chunk_tokens + settings.context_tokens
    if positions is not None and window > positions:
        raise InvalidInputError(
            f"chunk_tokens + context_tokens = {window} exceeds the model's {positions} "
            "positions; lower --chunk-tokens or --context-tokens"
        )


def rules_for(settings: EvaluationSettings) -> TokenRules:
    """The token rules of ``settings.bound_version`` (version 2 computes the centres)."""
    if settings.bound_version == 1:
        return V1_RULES
    return TokenRules(
        ties_count_against=True, centre_alphas=settings.alphas, centre_ks=settings.top_k
    )


def _seed(
    settings: EvaluationSettings, model_identity: str, source: TokenSource
) -> tuple[int, dict[str, Any] | None]:
    """(seed, what it was derived from): the given seed, else one fixed by the inputs."""
    if settings.seed is not None:
        return settings.seed, None
    inputs = {
        "artifact_sha256": model_identity,
        "data_sha256": source.record.shards_sha256,
        "documents_sha256": source.record.documents_sha256,
        "chunk_tokens": settings.chunk_tokens,
        "context_tokens": settings.context_tokens,
        "samples": None if settings.exhaustive else settings.samples,
    }
    return derive_seed(inputs), inputs


def _draw(source: TokenSource, settings: EvaluationSettings, seed: int) -> tuple[Any, int]:
    """(windows, draws): every chunk once, or ``samples`` chunks ∝ length, sorted by chunk.

    Observations are numbered in chunk order: the order statistics are summed in.
    """
    size, context = settings.chunk_tokens, settings.context_tokens
    if settings.bound_version == 1:
        n_tokens = int(source.n_tokens)
        if settings.exhaustive:
            chunks = all_chunks(n_tokens, size)
        else:
            chunks = sample_chunks(n_tokens, size, settings.samples, seed)
        chunks = np.sort(np.asarray(chunks, dtype=np.int64), kind="stable")
        return stream_windows(source, chunks, size, context), int(chunks.size)
    if not isinstance(source, DocumentSource):
        raise DataError(
            "version-2 chunks are aligned with documents, and this token source does not "
            "say where its documents end",
            hint="tokenize the source again (token shards of format 2)",
        )
    ends = source.document_ends()
    if settings.exhaustive:
        pairs = all_document_chunks(ends, size)
    else:
        stream = Stream.SEARCH if settings.stream == "search" else Stream.CERTIFICATION
        pairs = sample_document_chunks(ends, size, settings.samples, child_generator(seed, stream))
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    return document_windows(source, pairs, size, context), int(pairs.shape[0])


# --------------------------------------------------------------------------- plan


def _distinct_chunks(windows: WindowSource) -> tuple[list[_Chunk], np.ndarray]:
    """(distinct chunks in key order, chunk key of every window)."""
    ids = np.asarray(windows.chunk_ids, dtype=np.int64).reshape(windows.count, -1)
    _, first, inverse = np.unique(ids, axis=0, return_index=True, return_inverse=True)
    scored = windows.scored_tokens()
    chunks = [
        _Chunk(key, int(j), int(windows.context_tokens[j]), int(scored[j]))
        for key, j in enumerate(first.tolist())
    ]
    return chunks, inverse.reshape(-1)


def _plan(
    chunks: Sequence[_Chunk], batch_size: int | None, batch_tokens: int
) -> list[list[_Chunk]]:
    """Batches of chunks of one shape, in a fixed order (shape, then chunk key)."""
    groups: dict[tuple[int, int], list[_Chunk]] = {}
    for chunk in chunks:
        groups.setdefault(chunk.shape, []).append(chunk)
    batches: list[list[_Chunk]] = []
    for shape in sorted(groups):
        members = sorted(groups[shape], key=lambda item: item.key)
        length = shape[0] + shape[1]
        per_batch = batch_size if batch_size is not None else max(1, batch_tokens // length)
        for offset in range(0, len(members), per_batch):
            batches.append(members[offset : offset + per_batch])
    return batches


def _distributed() -> tuple[int, int]:
    """(rank, world size) under an initialised torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def _probe_batch_tokens(scorer: Scorer, length: int, start_tokens: int) -> int:
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


def _batch_tokens(
    scorer: Scorer, chunks: Sequence[_Chunk], settings: EvaluationSettings, world: int
) -> int:
    """Tokens per forward pass: fixed by --batch-size, probed on CUDA, a default elsewhere."""
    device = str(scorer.input_device)
    if settings.batch_size is not None:
        tokens = settings.batch_size * (settings.chunk_tokens + settings.context_tokens)
    elif device.startswith("cuda"):
        longest = max(chunk.context + chunk.scored for chunk in chunks)
        tokens = _probe_batch_tokens(scorer, longest, GPU_BATCH_TOKENS)
    else:
        tokens = CPU_BATCH_TOKENS if device.startswith("cpu") else GPU_BATCH_TOKENS // 4
    if world > 1:  # every rank must build the same plan
        import torch

        budgets: list[Any] = [None] * world
        torch.distributed.all_gather_object(budgets, tokens)
        tokens = min(int(value) for value in budgets)
    return tokens


# --------------------------------------------------------------------------- score


def _describe(chunk_id: np.ndarray, chunk_tokens: int, scored: int) -> str:
    unit, document, index = (int(value) for value in chunk_id[-3:])
    first = index * chunk_tokens
    where = "the stream" if document < 0 else f"document {document}"
    if unit >= 0:
        where += f" of unit {unit}"
    return f"chunk {index} (tokens {first}..{first + scored - 1}) of {where}"


def _chunk_results(
    batch: Sequence[_Chunk],
    scores: Any,
    settings: EvaluationSettings,
    vocab_size: int,
    windows: WindowSource,
) -> list[list[float]]:
    """Per chunk: [scored tokens, sum of bits per α..., sum of top-k errors per k...,
    then (version 2) the sums of q = (loss − centre)² in the same order]."""
    length = batch[0].scored
    logprob = scores.logprob.float().cpu().numpy().reshape(len(batch), length)
    rank = scores.rank.cpu().numpy().reshape(-1)
    finite = np.isfinite(logprob).all(axis=1)
    if not finite.all():
        bad = batch[int(np.argmin(finite))]
        where = _describe(windows.chunk_ids[bad.window], settings.chunk_tokens, bad.scored)
        raise EvaluationError(
            f"{where} gave non-finite log-probabilities; the weights or the dtype "
            "overflow (try --dtype float32)"
        )
    losses = np.concatenate(
        [
            smoothed_bits(logprob.reshape(-1), settings.alphas, vocab_size),
            topk_errors(rank, settings.top_k),
        ]
    )  # [statements, tokens]
    if scores.centres is not None:
        centres = scores.centres.cpu().numpy().T  # [statements, tokens], float64
        losses = np.concatenate([losses, (losses - centres) ** 2])
    sums = losses.reshape(losses.shape[0], len(batch), length).sum(axis=2)
    return [[float(length), *sums[:, row].tolist()] for row in range(len(batch))]


def _batch_inputs(
    batch: Sequence[_Chunk], windows: WindowSource, bos_token_id: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(input ids ``[B, context + scored]``, targets ``[B, scored]``) of one batch.

    The input is BOS, then the window without its last token (whose prediction is not
    scored), so a chunk of S tokens after P of context is P + S positions.
    """
    context, scored = batch[0].shape
    inputs = np.empty((len(batch), context + scored), dtype=np.int64)
    targets = np.empty((len(batch), scored), dtype=np.int64)
    for row, chunk in enumerate(batch):
        tokens = windows.window(chunk.window)
        inputs[row, 0] = bos_token_id
        inputs[row, 1:] = tokens[:-1]
        targets[row] = tokens[context:]
    if targets.size and (targets.min() < 0 or targets.max() >= vocab_size):
        raise DataError(
            f"token ids up to {int(targets.max())} but the model has {vocab_size} outputs; "
            "the shards were made with another tokenizer (re-run certify tokenize)"
        )
    return inputs, targets


def _score_batches(
    scorer: Scorer,
    batches: Sequence[Sequence[_Chunk]],
    windows: WindowSource,
    settings: EvaluationSettings,
    *,
    bos_token_id: int,
    done: dict[int, list[float]],
    on_batch: Callable[[Sequence[_Chunk], list[list[float]]], None],
) -> None:
    """Forward passes over every batch not already ``done``; ``on_batch`` gets each result."""
    import torch

    model = scorer.model
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                if all(chunk.key in done for chunk in batch):
                    continue
                inputs, targets = _batch_inputs(batch, windows, bos_token_id, scorer.vocab_size)
                scores = scorer.score(
                    torch.from_numpy(inputs).to(scorer.input_device),
                    batch[0].context,
                    torch.from_numpy(targets).to(scorer.input_device),
                )
                results = _chunk_results(batch, scores, settings, scorer.vocab_size, windows)
                on_batch(batch, results)
    finally:
        if was_training:
            model.train()


def _gather(results: dict[int, list[float]], seconds: float, world: int) -> tuple[Any, float]:
    """Every rank's per-chunk results (and the slowest rank's time) under torchrun."""
    if world <= 1:
        return results, seconds
    import torch

    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, results)
    spent: list[Any] = [None] * world
    torch.distributed.all_gather_object(spent, seconds)
    merged = {chunk: values for part in gathered for chunk, values in part.items()}
    return merged, max(float(value) for value in spent)


def score_windows(
    model: Any,
    windows: WindowSource,
    settings: EvaluationSettings,
    *,
    bos_token_id: int,
    data_sha256: str,
    progress: ProgressCallback | None = None,
    checkpoint_path: str | Path | None = None,
    model_identity: str | None = None,
    vocab_slice: int | None = None,
    rules: TokenRules | None = None,
) -> ScoredWindows:
    """Resume, score and gather: per-window loss sums of ``model`` on ``windows``.

    ``progress(done, total)`` counts scored tokens of this rank. ``checkpoint_path``
    keeps per-batch results keyed by the weights (``model_identity``, default
    :func:`model_fingerprint`), the windows over ``data_sha256`` and ``settings``.
    ``rules`` overrides the token rules of ``settings.bound_version`` (benchmarks).
    """
    _check_window_fits(model, settings)
    chunks, window_keys = _distinct_chunks(windows)
    device = str(model.get_input_embeddings().weight.device)
    on_gpu = not device.startswith("cpu")
    scorer = Scorer(
        model,
        GPU_LOGIT_ELEMENTS if on_gpu else CPU_LOGIT_ELEMENTS,
        vocab_slice,
        rules if rules is not None else rules_for(settings),
    )
    rank, world = _distributed()

    path, key, batch_tokens, done = _resume(
        checkpoint_path, model, model_identity, windows, data_sha256, settings, rank, world
    )
    if batch_tokens is None:
        batch_tokens = _batch_tokens(scorer, chunks, settings, world)
    if path is not None and key is not None and not done:
        start_checkpoint(path, key, batch_tokens)
    mine = _plan(chunks, settings.batch_size, batch_tokens)[rank::world]
    total = sum(chunk.scored for batch in mine for chunk in batch)
    results = {chunk.key: done[chunk.key] for batch in mine for chunk in batch if chunk.key in done}
    finished = [sum(values[0] for values in results.values())]
    if progress is not None:
        progress(int(finished[0]), total)

    def on_batch(batch: Sequence[_Chunk], chunk_values: list[list[float]]) -> None:
        for chunk, values in zip(batch, chunk_values, strict=True):
            results[chunk.key] = values
        if path is not None:
            append_checkpoint(path, [chunk.key for chunk in batch], chunk_values)
        finished[0] += sum(chunk.scored for chunk in batch)
        if progress is not None:
            progress(int(finished[0]), total)

    started = time.perf_counter()
    _score_batches(
        scorer, mine, windows, settings, bos_token_id=bos_token_id, done=done, on_batch=on_batch
    )
    merged, seconds = _gather(results, time.perf_counter() - started, world)
    per_chunk = np.array([merged[chunk.key] for chunk in chunks], dtype=np.float64)
    return ScoredWindows(
        rows=per_chunk[window_keys],
        device=device,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        vocab_size=scorer.vocab_size,
        tokens_scored=int(sum(chunk.scored for chunk in chunks)),
        seconds=seconds,
    )


def _resume(
    checkpoint_path: str | Path | None,
    model: Any,
    model_identity: str | None,
    windows: WindowSource,
    data_sha256: str,
    settings: EvaluationSettings,
    rank: int,
    world: int,
) -> tuple[Path | None, str | None, int | None, dict[int, list[float]]]:
    """(checkpoint path of this rank, key, batch tokens, finished chunks) or nothing."""
    if checkpoint_path is None:
        return None, None, None, {}
    identity = model_identity or model_fingerprint(model)
    data_identity = windows_sha256(windows.chunk_ids, windows.observation, data_sha256)
    key = checkpoint_key(identity, data_identity, to_dict(settings))
    path = Path(checkpoint_path)
    if world > 1:
        path = path.with_name(f"{path.name}.rank{rank}-of-{world}")
    batch_tokens, done = read_checkpoint(path, key)
    return path, key, batch_tokens, done


# --------------------------------------------------------------------------- record


def _metric_names(settings: EvaluationSettings) -> list[tuple[str, float | None, int | None]]:
    return [("bits", alpha, None) for alpha in settings.alphas] + [
        ("top_k_error", None, k) for k in settings.top_k
    ]


def aggregate(
    rows: np.ndarray,
    observation: np.ndarray,
    settings: EvaluationSettings,
    *,
    n_tokens: int,
) -> tuple[MetricSample, ...]:
    """Metric statistics from per-window rows ``[scored, sums...]``.

    A window's value is its chunk's mean loss; an observation's value is the mean of its
    windows' values (one window each in exact mode); the mean and the unbiased variance
    run over observations, in index order. Exhaustive: the mean is token-weighted (the
    dataset's risk R̂ over its n tokens); the variance is that of the chunk means. Rows
    with twice as many sums also carry the sums of q = (loss − centre)², whose
    statistics become ``square_mean`` and ``square_variance`` (version 2).

    >>> import numpy as np
    >>> rows = np.array([[2.0, 4.0], [4.0, 4.0]])
    >>> settings = EvaluationSettings(alphas=(0.5,), top_k=(), samples=2)
    >>> metrics = aggregate(rows, np.arange(2), settings, n_tokens=9)
    >>> [(m.sample_mean, m.sample_variance) for m in metrics]
    [(1.5, 0.5)]
    """
    names = _metric_names(settings)
    squares = rows.shape[1] - 1 == 2 * len(names)
    means = rows[:, 1:] / rows[:, [0]]
    observation = np.asarray(observation, dtype=np.int64)
    count = int(observation.max()) + 1 if observation.size else 0
    windows_per = np.bincount(observation, minlength=count).astype(np.float64)
    values = (
        np.stack(
            [np.bincount(observation, weights=column, minlength=count) for column in means.T],
            axis=1,
        )
        / windows_per[:, None]
    )
    samples = int(values.shape[0])
    if settings.exhaustive:  # token-weighted, i.e. R-hat (and V-hat) over the whole stream
        centre = rows[:, 1:].sum(axis=0) / float(n_tokens)
    else:
        centre = values.mean(axis=0)
    variance = values.var(axis=0, ddof=1) if samples > 1 else np.zeros(values.shape[1])
    offset = len(names)
    return tuple(
        MetricSample(
            name=name,  # type: ignore[arg-type]
            sample_mean=float(centre[column]),
            sample_variance=float(variance[column]),
            samples=samples,
            alpha=alpha,
            k=k,
            square_mean=float(centre[offset + column]) if squares else None,
            square_variance=float(variance[offset + column]) if squares else None,
        )
        for column, (name, alpha, k) in enumerate(names)
    )


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
    ``bos_token_id`` starts every input (EOS when the tokenizer has no BOS: see
    ``certify.data.bos_token_id``). With ``tokenizer`` the shards' tokenizer hash is
    checked first. ``progress(done, total)`` counts scored tokens. ``checkpoint_path``
    keeps per-batch results so a rerun after an interruption skips them and returns
    identical numbers. Returns per-metric sample means and unbiased variances of the
    per-chunk mean losses; in exhaustive mode the mean is token-weighted, i.e. the risk
    over the whole dataset.
    """
    if tokenizer is not None:
        check_tokenizer(shards, tokenizer)  # type: ignore[arg-type]
    n_tokens = _check_inputs(model, shards, settings)
    identity = model_identity or model_fingerprint(model)
    seed, seed_inputs = _seed(settings, identity, shards)
    windows, draws = _draw(shards, settings, seed)
    scored = score_windows(
        model,
        windows,
        settings,
        bos_token_id=bos_token_id,
        data_sha256=shards.record.shards_sha256,
        progress=progress,
        checkpoint_path=checkpoint_path,
        model_identity=identity,
        vocab_slice=vocab_slice,
    )
    version_2 = settings.bound_version >= 2
    return RiskRecord(
        vocab_size=scored.vocab_size,
        n_tokens=n_tokens,
        chunk_tokens=settings.chunk_tokens,
        context_tokens=settings.context_tokens,
        sampling=SamplingRecord(
            method="exhaustive" if settings.exhaustive else "length_proportional_with_replacement",
            samples=draws,
            seed=seed,
            seed_inputs=seed_inputs,
            stream=settings.stream if version_2 else None,
        ),
        metrics=aggregate(scored.rows, windows.observation, settings, n_tokens=n_tokens),
        device=scored.device,
        dtype=scored.dtype,
        tokens_scored=scored.tokens_scored,
        seconds=scored.seconds,
        data=shards.record,
        bound_version=settings.bound_version,
    )


def evaluate_sampled(
    model: Any,
    windows: WindowSource,
    data: SampledDataRecord,
    settings: EvaluationSettings,
    *,
    bos_token_id: int,
    seed_inputs: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    checkpoint_path: str | Path | None = None,
    model_identity: str | None = None,
    vocab_slice: int | None = None,
) -> RiskRecord:
    """Measure the losses of ``model`` on the windows of a sampled-mode draw.

    Each accepted unit is one observation: the mean over its r windows of their chunk
    means (DESIGN.md "sampled mode"), whose expectation is exactly R̂ (and, for q, V̂);
    the statistics run over the G observations. n is not known (the record's total
    weight and draws bound it below), so ``n_tokens`` is None.
    """
    _check_window_fits(model, settings)
    if settings.exhaustive:
        raise InvalidInputError(
            "sampled mode draws units; exhaustive evaluation needs the whole dataset",
            field="exhaustive",
        )
    scored = score_windows(
        model,
        windows,
        settings,
        bos_token_id=bos_token_id,
        data_sha256=data.draws_sha256,
        progress=progress,
        checkpoint_path=checkpoint_path,
        model_identity=model_identity,
        vocab_slice=vocab_slice,
    )
    return RiskRecord(
        vocab_size=scored.vocab_size,
        n_tokens=None,
        chunk_tokens=data.chunk_tokens,
        context_tokens=data.context_tokens,
        sampling=SamplingRecord(
            method="units_proportional_to_weight",
            samples=data.accepted,
            seed=data.seed,
            seed_inputs=seed_inputs,
            stream=settings.stream,
        ),
        metrics=aggregate(scored.rows, windows.observation, settings, n_tokens=0),
        device=scored.device,
        dtype=scored.dtype,
        tokens_scored=scored.tokens_scored,
        seconds=scored.seconds,
        data=data,
        bound_version=settings.bound_version,
    )
