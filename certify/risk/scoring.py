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

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

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
#: probabilities whose centres are computed together. numpy's vectorised log and dot
#: product run fastest on the whole block (measured: 2^16-element tiles 7x slower, 2^20
#: 2x); a bound keeps the float64 per-row sums and the GPU's temporaries in check
_CENTRE_TILE_ELEMENTS = 1 << 27


@dataclasses.dataclass(frozen=True)
class TokenRules:
    """How each token is scored: the rules of one version of DESIGN.md "The bound".

    ``ties_count_against``: the rank counts the *other* entries whose logit is ≥ the
    target's (version 2: a constant predictor has top-k error 1), instead of the entries
    strictly greater (version 1: ties favour the target). ``centre_alphas`` and
    ``centre_ks``: also compute, from the context alone, each statement's centre Y
    (version 2): for bits at α the model's expected smoothed loss
    −Σ_y p(y)·log2((1−α)p(y) + α/V), for top-k error the mass outside its k most likely
    tokens.
    """

    ties_count_against: bool = True
    centre_alphas: tuple[float, ...] = ()
    centre_ks: tuple[int, ...] = ()

    @property
    def centres(self) -> int:
        """Number of centres per token (one per α, then one per k)."""
        return len(self.centre_alphas) + len(self.centre_ks)


#: version 1: ties favour the target, no centres
V1_RULES = TokenRules(ties_count_against=False)


class TokenScores(NamedTuple):
    """Per scored token: log p(target) (float32), rank (int64), centres ``[N, C]`` (float64)."""

    logprob: torch.Tensor
    rank: torch.Tensor
    centres: torch.Tensor | None


class _Workspace:
    """Two reusable float32 buffers of ``rows x width``: fresh logits, and scratch.

    Reusing them for every block avoids allocating (and page-faulting) tens of MB per
    operation, which dominates the CPU time of the log-softmax otherwise.
    """

    def __init__(self, rows: int, width: int, device: torch.device) -> None:
        import torch

        self.logits = torch.empty(rows * width, dtype=torch.float32, device=device)
        self.flags = torch.empty(rows * width, dtype=torch.float32, device=device)

    def view(self, buffer: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        return buffer[: rows * width].view(rows, width)


def _count_at_least(
    logits: torch.Tensor, target_logit: torch.Tensor, flags: torch.Tensor, against: bool
) -> torch.Tensor:
    """Entries whose logit is ≥ the target's when ``against`` (the target itself included),
    else strictly >; the caller subtracts the target once."""
    import torch

    compare = torch.ge if against else torch.gt
    return compare(logits, target_logit, out=flags).sum(dim=-1).long()


class _Centres:
    """Accumulates the centres over vocabulary slices of probabilities (float64 sums)."""

    def __init__(self, rules: TokenRules, rows: int, vocab_size: int, device: Any) -> None:
        import torch

        self.rules = rules
        self.vocab_size = vocab_size
        self.entropy = torch.zeros(
            (rows, len(rules.centre_alphas)), dtype=torch.float64, device=device
        )
        self.top_k = max(rules.centre_ks, default=0)
        self.best: torch.Tensor | None = None

    def add(self, probabilities: torch.Tensor, scratch: torch.Tensor) -> None:
        """Take one slice of probabilities ``[rows, width]`` (``scratch`` is overwritten).

        Σ p·ln((1−α)p + α/V) = ln(1−α)·Σp + Σ p·ln(p + d) with d = α/((1−α)V): one add,
        one log and one dot product per α. On a CPU the three run in numpy on the same
        memory (its log and dot product are 3-8 times faster than torch's there); float32
        terms and float32 row sums (as the logits), then float64.
        """
        import torch

        on_cpu = probabilities.device.type == "cpu"
        rows = int(probabilities.shape[0])
        step = max(1, _CENTRE_TILE_ELEMENTS // max(1, int(probabilities.shape[1])))
        for start in range(0, rows, step):
            tile = probabilities[start : start + step]
            work = scratch[: tile.shape[0]]
            mass = tile.sum(dim=-1).double()
            for column, alpha in enumerate(self.rules.centre_alphas):
                shift = alpha / ((1.0 - alpha) * self.vocab_size)
                if on_cpu:
                    tile_np, work_np = tile.numpy(), work.numpy()
                    np.add(tile_np, shift, out=work_np)
                    np.log(work_np, out=work_np)
                    dot = torch.from_numpy(np.einsum("ij,ij->i", tile_np, work_np)).double()
                else:
                    torch.add(tile, shift, out=work).log_()
                    dot = torch.linalg.vecdot(tile, work).double()
                dot += math.log1p(-alpha) * mass
                self.entropy[start : start + tile.shape[0], column] += dot
        if self.top_k:
            keep = min(self.top_k, int(probabilities.shape[1]))
            top = torch.topk(probabilities, keep, dim=-1, sorted=False).values
            if self.best is not None:
                top = torch.cat([self.best, top], dim=1)
                top = torch.topk(top, min(self.top_k, int(top.shape[1])), dim=-1).values
            self.best = top

    def result(self) -> torch.Tensor:
        """``[rows, C]`` float64: expected smoothed bits per α, then mass outside top-k."""
        import torch

        columns = [-self.entropy / math.log(2.0)]
        if self.rules.centre_ks:
            assert self.best is not None
            ordered = torch.sort(self.best.double(), dim=-1, descending=True).values
            cumulative = ordered.cumsum(dim=-1)
            for k in self.rules.centre_ks:
                inside = cumulative[:, min(k, int(cumulative.shape[1])) - 1]
                columns.append((1.0 - inside).clamp_(min=0.0)[:, None])
        return torch.cat(columns, dim=1)


def _stream_scores(
    columns: Callable[[int, int, torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    vocab_size: int,
    vocab_slice: int,
    workspace: _Workspace,
    rules: TokenRules,
) -> TokenScores:
    """Target log-probability, rank and centres from logits produced slice by slice.

    ``columns(lo, hi, out)`` writes float32 logits of vocabulary entries ``lo:hi`` of
    every row into ``out`` (which is then overwritten here). With one slice the logits
    are computed once; with several, a first pass keeps a running log-sum-exp and picks
    the target's logit out of the same numbers the rank is compared against, and a second
    pass counts the entries that beat it (and accumulates the centres). Counts are sums of
    0/1 floats, exact below 2^24.
    """
    import torch

    rows = int(targets.shape[0])
    centres = _Centres(rules, rows, vocab_size, targets.device) if rules.centres else None
    if vocab_slice >= vocab_size:
        logits = columns(0, vocab_size, workspace.view(workspace.logits, rows, vocab_size))
        target_logit = logits.gather(1, targets[:, None])
        # rank first: the normalisation below overwrites ``logits``
        flags = workspace.view(workspace.flags, rows, vocab_size)
        rank = _count_at_least(logits, target_logit, flags, rules.ties_count_against)
        rank -= int(rules.ties_count_against)  # the target is not "another" token
        peak = logits.amax(dim=-1, keepdim=True)
        total = logits.sub_(peak).exp_().sum(dim=-1)
        logprob = target_logit.squeeze(1) - (peak.squeeze(1) + torch.log(total))
        if centres is not None:
            centres.add(logits.div_(total[:, None]), flags)
        return TokenScores(logprob, rank, None if centres is None else centres.result())
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
        rank += _count_at_least(logits, target_logit[:, None], flags, rules.ties_count_against)
        if centres is not None:
            centres.add(logits.sub_(log_normaliser[:, None]).exp_(), flags)
    rank -= int(rules.ties_count_against)  # the target is not "another" token
    return TokenScores(
        target_logit - log_normaliser, rank, None if centres is None else centres.result()
    )


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
    rules: TokenRules,
) -> TokenScores:
    """Run :func:`_stream_scores` over row blocks and concatenate."""
    import torch

    rows_per_block, vocab_slice = _block_plan(vocab_size, logit_elements, vocab_slice)
    total_rows = int(targets.shape[0])
    if total_rows == 0:
        empty = torch.zeros(0, device=targets.device)
        centres = torch.zeros((0, rules.centres), dtype=torch.float64) if rules.centres else None
        return TokenScores(empty.float(), empty.long(), centres)
    rows_per_block = min(rows_per_block, total_rows)
    workspace = _Workspace(rows_per_block, vocab_slice, targets.device)
    parts = [
        _stream_scores(
            columns_of_block(start, min(start + rows_per_block, total_rows)),
            targets[start : start + rows_per_block],
            vocab_size,
            vocab_slice,
            workspace,
            rules,
        )
        for start in range(0, total_rows, rows_per_block)
    ]
    centres = torch.cat([part.centres for part in parts]) if rules.centres else None  # type: ignore[misc]
    return TokenScores(
        torch.cat([part.logprob for part in parts]),
        torch.cat([part.rank for part in parts]),
        centres,
    )


def scores_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    rules: TokenRules,
    *,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> TokenScores:
    """Log-probability, rank and centres of ``targets`` under ``logits`` ``[N, V]``.

    The log-softmax runs over row blocks and vocabulary slices in float32.
    """

    def columns_of_block(start: int, stop: int) -> Callable[..., torch.Tensor]:
        def columns(lo: int, hi: int, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(logits[start:stop, lo:hi])

        return columns

    return _blocked(
        targets, int(logits.shape[-1]), vocab_slice, logit_elements, columns_of_block, rules
    )


def scores_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    rules: TokenRules,
    *,
    bias: torch.Tensor | None = None,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> TokenScores:
    """Log-probability, rank and centres of ``targets`` from final hidden states.

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

    return _blocked(
        targets, int(weight.shape[0]), vocab_slice, logit_elements, columns_of_block, rules
    )


def logprob_and_rank_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Version-1 log-probability (float32) and rank of ``targets`` under ``logits`` ``[N, V]``.

    The rank is the number of entries with a strictly greater logit (ties favour the
    target), as version 1 of the bound scored it.
    """
    scores = scores_from_logits(
        logits, targets, V1_RULES, vocab_slice=vocab_slice, logit_elements=logit_elements
    )
    return scores.logprob, scores.rank


def target_logprob_and_rank(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    vocab_slice: int | None = None,
    logit_elements: int = CPU_LOGIT_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Version-1 log-probability and rank of ``targets`` from final hidden states."""
    scores = scores_from_hidden(
        hidden,
        weight,
        targets,
        V1_RULES,
        bias=bias,
        vocab_slice=vocab_slice,
        logit_elements=logit_elements,
    )
    return scores.logprob, scores.rank


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
    """Runs a causal LM on equal-shape batches and scores the target tokens by ``rules``."""

    def __init__(
        self, model: Any, logit_elements: int, vocab_slice: int | None, rules: TokenRules = V1_RULES
    ) -> None:
        import torch

        self.model = model
        self.logit_elements = logit_elements
        self.vocab_slice = vocab_slice
        self.rules = rules
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
    ) -> TokenScores:
        """Scores of ``targets`` ``[B, L]``, predicted from position ``first_scored`` on."""
        length = int(targets.shape[1])
        if self.use_hidden:
            assert self.head is not None
            hidden = self._hidden(input_ids)[:, first_scored : first_scored + length]
            weight = self.head.weight
            flat = hidden.reshape(-1, hidden.shape[-1]).to(weight.device)
            return scores_from_hidden(
                flat,
                weight,
                targets.reshape(-1).to(weight.device),
                self.rules,
                bias=self.head.bias,
                vocab_slice=self.vocab_slice,
                logit_elements=self.logit_elements,
            )
        logits = self.model(input_ids=input_ids, use_cache=False).logits
        logits = logits[:, first_scored : first_scored + length]
        flat_logits = logits.reshape(-1, logits.shape[-1])
        return scores_from_logits(
            flat_logits,
            targets.reshape(-1).to(flat_logits.device),
            self.rules,
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
