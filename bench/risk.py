"""Tokens/s of ``certify.risk.evaluate`` vs a naive ``model(input_ids, labels=...)`` loop.

Both run in the same process on the same chunks of the same synthetic token stream,
with a small-but-not-toy Llama built from its config (random weights, fp32, CPU):
4 layers, hidden 512, 8 heads, MLP 1,376, vocabulary 32,000 (about 29 M parameters,
16 M of them in the output layer, so the log-softmax part matters).

* ``evaluate``: the product path. One forward pass per batch gives every α of the
  grid (4 values) and every top-k (3 values), per-chunk statistics, the works.
* ``naive_batched``: ``model(input_ids, labels=input_ids)`` on the same batches
  (same sequences per forward pass), i.e. only the mean cross-entropy, full logits.
* ``naive_per_chunk``: the same, one chunk per forward pass (what a plain loop does).

Runs alternate (naive, evaluate, naive, ...) so machine load hits both alike; the
best of the repeats is reported (the least disturbed run). Results go to
bench/results/risk.json.

Run:  .venv/bin/python bench/risk.py [--quick] [--chunks 32] [--chunk-tokens 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from certify import data, risk
from certify.records import DatasetRecord, EvaluationSettings

VOCAB = 32000


class MemoryTokens:
    """An in-memory token stream with the ``TokenShards`` interface."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = tokens
        self.record = DatasetRecord("synthetic", "none", "0" * 64, len(tokens), 1, "0" * 64)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop].astype(np.int64)


def build_model() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=1376,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def naive(model: Any, batches: list[np.ndarray]) -> float:
    """Seconds for ``model(input_ids, labels=input_ids)`` over ``batches``."""
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            ids = torch.from_numpy(batch)
            loss = model(input_ids=ids, labels=ids).loss
            float(loss)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks, one repeat")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--chunk-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("bench/results/risk.json"))
    args = parser.parse_args()
    chunks = 8 if args.quick else args.chunks
    repeats = 1 if args.quick else args.repeats

    model = build_model()
    parameters = sum(p.numel() for p in model.parameters())
    chunk_tokens = args.chunk_tokens
    generator = np.random.default_rng(0)
    n_tokens = chunk_tokens * chunks * 4
    source = MemoryTokens(generator.integers(3, VOCAB, size=n_tokens, dtype=np.int64))
    settings = EvaluationSettings(
        chunk_tokens=chunk_tokens, samples=chunks, exhaustive=False, seed=0, device="cpu"
    )
    # the chunks evaluate will draw (distinct ones; the sample is with replacement)
    drawn = np.unique(data.sample_chunks(n_tokens, chunk_tokens, chunks, 0))
    sequences = []
    for chunk in drawn:
        start, stop = data.chunk_span(int(chunk), n_tokens, chunk_tokens)
        sequences.append(np.concatenate([[1], source.read(start, stop)]))
    per_batch = max(1, risk.CPU_BATCH_TOKENS // chunk_tokens)  # evaluate's automatic size
    batched = [
        np.stack(sequences[i : i + per_batch]) for i in range(0, len(sequences), per_batch)
    ]
    single = [sequence[None, :] for sequence in sequences]
    scored = int(len(sequences) * chunk_tokens)

    timings: dict[str, list[float]] = {"naive_per_chunk": [], "naive_batched": [], "evaluate": []}
    naive(model, batched[:1])  # warm-up (allocator, kernels)
    for _ in range(repeats):
        timings["naive_per_chunk"].append(naive(model, single))
        timings["naive_batched"].append(naive(model, batched))
        started = time.perf_counter()
        record = risk.evaluate(model, source, settings, bos_token_id=1)
        timings["evaluate"].append(time.perf_counter() - started)
        assert record.tokens_scored == scored

    best = {name: min(values) for name, values in timings.items()}
    rate = {name: scored / seconds for name, seconds in best.items()}
    result = {
        "benchmark": "risk",
        "what": "tokens/s of certify.risk.evaluate vs model(input_ids, labels=...) on CPU",
        "command": "python bench/risk.py" + (" --quick" if args.quick else ""),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
            "torch": torch.__version__,
        },
        "model": {
            "architecture": "llama",
            "layers": 4,
            "hidden_size": 512,
            "vocab_size": VOCAB,
            "parameters": parameters,
            "dtype": "float32",
        },
        "chunks": len(sequences),
        "chunk_tokens": chunk_tokens,
        "sequences_per_batch": per_batch,
        "tokens_scored": scored,
        "evaluate_outputs": {"alphas": list(settings.alphas), "top_k": list(settings.top_k)},
        "seconds_all_repeats": timings,
        "tokens_per_second": rate,
        "speedup_vs_naive_batched": rate["evaluate"] / rate["naive_batched"],
        "speedup_vs_naive_per_chunk": rate["evaluate"] / rate["naive_per_chunk"],
        "target": "evaluate >= 1.0x naive (same chunks, same machine, same run)",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(f"{args.output.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, args.output)
    for name in ("naive_per_chunk", "naive_batched", "evaluate"):
        print(f"{name:16s} {rate[name]:10,.0f} tokens/s  (best of {repeats})")
    print(
        f"evaluate / naive batched   = {result['speedup_vs_naive_batched']:.2f}x\n"
        f"evaluate / naive per chunk = {result['speedup_vs_naive_per_chunk']:.2f}x\n"
        f"wrote {args.output}",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
