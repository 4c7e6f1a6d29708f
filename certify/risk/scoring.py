"""Scoring: target log-probabilities and ranks from a causal LM, without full logits.

Hidden states, not logits: the model's base (``model.base_model``, e.g. ``LlamaModel``
or ``GPT2Model``) gives the final hidden states (after the final norm) and the output
layer (``model.get_output_embeddings()``, an ``nn.Linear``) is applied per block of
rows (and, when the vocabulary is huge, per slice of the vocabulary with a streaming
log-sum-exp), so full ``[batch, seq, V]`` logits never exist. Models whose logits are
more than ``lm_head(hidden)`` (soft-capping, logit scaling) are detected by comparing
both paths once on a short input and then evaluated from the full logits instead.

Per token, from one forward pass: the target's log-probability (float32) and its rank
(the number of vocabulary entries with a *strictly* greater logit, so ties count in
the target's favour). From those, for the whole grid at once: bits at smoothing α,
−log2((1−α)·p + α/V) in float64, and the top-k error, 1 when rank ≥ k.

torch is imported inside the functions that need it, so importing certify (and its
command line) stays fast.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: float32 logits held at once: rows x vocabulary slice (256 MiB on CPU, 512 MiB on GPU),
#: twice (logits and comparisons); large blocks read the output layer fewer times
CPU_LOGIT_ELEMENTS = 1 << 26
GPU_LOGIT_ELEMENTS = 1 << 27
#: fewest rows per logits block before the vocabulary itself is sliced
MIN_ROWS_PER_BLOCK = 64

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


class Scorer:
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
