"""Token-level risk: the losses of a model on chunks of a tokenized dataset.

The definition is DESIGN.md "The bound": chunk j is fed as one BOS token (EOS when the
tokenizer has none), the P = ``context_tokens`` tokens before the chunk, then the
chunk; every chunk token is scored, BOS and context never. The input drops the chunk's
last token (its prediction is not scored), so a chunk of S tokens with P tokens of
context is a forward pass of exactly P + S positions.

V is the width of the model's output layer (``config.vocab_size``), which may exceed
``len(tokenizer)`` when the embedding matrix is padded: the model's distribution is a
softmax over every row, so the smoothed predictor mixes with the uniform law over all V
outputs, and the bound uses the same V.

Modules: ``scoring`` (log-probabilities and ranks without full logits), ``evaluate``
(the named steps: draw, plan, resume, score, gather, record), ``checkpoint`` (resume
files), ``document`` (risk.json), ``loading`` (devices, dtypes, models).
"""

from __future__ import annotations

from certify.risk.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_key
from certify.risk.document import RISK_FORMAT_VERSION, risk_from_dict, risk_to_dict, validate_risk
from certify.risk.evaluate import (
    CPU_BATCH_TOKENS,
    GPU_BATCH_TOKENS,
    ScoredWindows,
    WindowSource,
    aggregate,
    evaluate,
    evaluate_sampled,
    score_windows,
)
from certify.risk.loading import load_for_evaluation, pick_device, pick_dtype, resolve_device
from certify.risk.scoring import (
    logprob_and_rank_from_logits,
    max_positions,
    model_fingerprint,
    smoothed_bits,
    target_logprob_and_rank,
    topk_errors,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CPU_BATCH_TOKENS",
    "GPU_BATCH_TOKENS",
    "RISK_FORMAT_VERSION",
    "ScoredWindows",
    "WindowSource",
    "aggregate",
    "checkpoint_key",
    "evaluate",
    "evaluate_sampled",
    "load_for_evaluation",
    "logprob_and_rank_from_logits",
    "max_positions",
    "model_fingerprint",
    "pick_device",
    "pick_dtype",
    "resolve_device",
    "risk_from_dict",
    "risk_to_dict",
    "score_windows",
    "smoothed_bits",
    "target_logprob_and_rank",
    "topk_errors",
    "validate_risk",
]
