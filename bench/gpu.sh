#!/usr/bin/env bash
# Throughput and model FLOPs utilisation of `certify.risk.evaluate` on one GPU.
#
# Builds a Llama-2-7B-shaped model from its config directly on the GPU in bf16 (random
# weights: speed does not depend on them; nothing is downloaded), makes a synthetic token
# stream of 2,000 chunks x 1,024 tokens, and evaluates every chunk once (exhaustive mode,
# all 4 alphas and 3 top-k values, automatic batch size) through certify.risk.evaluate.
# A short naive baseline (model(input_ids, labels=...), same batches) runs in the same
# process for comparison.
#
# FLOPs counted (forward only, per input token of a sequence of T tokens):
#   2 * (parameters - input embedding)   matmuls of every linear layer incl. the LM head
# + 2 * layers * T * hidden              causal attention: QK^T and AV, T/2 keys on average
# MFU = counted FLOPs / seconds / peak, peak = 989 TFLOP/s (H100 SXM dense bf16; also
# the H200's). Override with --peak-tflops. Target: MFU >= 45% on an H100.
#
# Needs: python with a CUDA build of torch, transformers, numpy (pip install -e .).
# Usage:  bash bench/gpu.sh                 # the real run (~2-4 minutes on an H100)
#         bash bench/gpu.sh --tiny          # CPU dry run of the same code, tiny config
#         bash bench/gpu.sh --chunks 500    # fewer chunks
# Writes bench/results/gpu.json (or --output PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then  # the project's venv when there is one, else python3
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
exec "$PYTHON" - "$@" <<'PYTHON_SCRIPT'
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from certify import risk
from certify.records import DatasetRecord, EvaluationSettings

parser = argparse.ArgumentParser(description="certify.risk.evaluate throughput on a GPU")
parser.add_argument("--tiny", action="store_true", help="CPU dry run with a tiny config")
parser.add_argument("--chunks", type=int, default=None, help="chunks (default 2000; tiny 12)")
parser.add_argument("--chunk-tokens", type=int, default=None, help="default 1024; tiny 64")
parser.add_argument("--baseline-chunks", type=int, default=None, help="naive loop chunks")
parser.add_argument("--peak-tflops", type=float, default=989.0)
parser.add_argument("--batch-size", type=int, default=None, help="default: automatic")
parser.add_argument("--output", default="bench/results/gpu.json")
args = parser.parse_args()

from transformers import AutoModelForCausalLM, LlamaConfig

tiny = args.tiny
chunks = args.chunks or (12 if tiny else 2000)
chunk_tokens = args.chunk_tokens or (64 if tiny else 1024)
baseline_chunks = args.baseline_chunks if args.baseline_chunks is not None else (4 if tiny else 128)
device = "cpu" if tiny else "cuda"
dtype = torch.float32 if tiny else torch.bfloat16
if not tiny and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with --tiny for a CPU dry run")

if tiny:
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=172,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=2)
else:  # meta-llama/Llama-2-7b-hf's config.json
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         max_position_embeddings=4096, rms_norm_eps=1e-5,
                         bos_token_id=1, eos_token_id=2)

started = time.perf_counter()
torch.manual_seed(0)
with torch.device(device):  # weights are created on the GPU, in bf16, no CPU copy
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
model.eval()
if not tiny:
    torch.cuda.synchronize()
build_seconds = time.perf_counter() - started
parameters = sum(p.numel() for p in model.parameters())
embedding = model.get_input_embeddings().weight.numel()
name = torch.cuda.get_device_name() if not tiny else "cpu"
print(f"device {name}; model {parameters / 1e9:.2f} B parameters built in {build_seconds:.1f} s",
      flush=True)


class MemoryTokens:
    """Synthetic token stream with the TokenShards interface."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.record = DatasetRecord("synthetic", "none", "0" * 64, len(tokens), 1, "0" * 64)

    @property
    def n_tokens(self):
        return len(self.tokens)

    def read(self, start, stop):
        return self.tokens[start:stop].astype(np.int64)


n_tokens = chunks * chunk_tokens
stream = MemoryTokens(
    np.random.default_rng(0).integers(3, config.vocab_size, size=n_tokens, dtype=np.int64)
)
settings = EvaluationSettings(chunk_tokens=chunk_tokens, exhaustive=True, device=device,
                              batch_size=args.batch_size)


def flops(tokens_in, sequence_length):
    linear = 2 * (parameters - embedding) * tokens_in
    attention = 2 * config.num_hidden_layers * sequence_length * config.hidden_size * tokens_in
    return linear + attention


# Naive baseline: model(input_ids, labels=...) over the first chunks, batches of 16.
baseline = None
if baseline_chunks:
    batch = 16 if not tiny else 2
    ids = torch.from_numpy(stream.tokens[: baseline_chunks * chunk_tokens].copy())
    ids = ids.view(baseline_chunks, chunk_tokens).to(device)
    ids[:, 0] = config.bos_token_id
    with torch.inference_mode():
        model(input_ids=ids[:batch], labels=ids[:batch])  # warm-up
        if not tiny:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, baseline_chunks, batch):
            float(model(input_ids=ids[i:i + batch], labels=ids[i:i + batch]).loss)
        if not tiny:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    baseline = {"chunks": baseline_chunks, "batch": batch, "seconds": seconds,
                "tokens_per_second": baseline_chunks * chunk_tokens / seconds,
                "mfu": flops(baseline_chunks * chunk_tokens, chunk_tokens) / seconds
                / (args.peak_tflops * 1e12)}
    print(f"naive model(input_ids, labels): {baseline['tokens_per_second']:,.0f} tokens/s, "
          f"MFU {100 * baseline['mfu']:.1f}%", flush=True)
    del ids

last = [time.perf_counter(), 0]


def progress(done, total):
    now = time.perf_counter()
    if now - last[0] > 15 or done == total:
        print(f"  {done:,}/{total:,} tokens", flush=True)
        last[0] = now


t0 = time.perf_counter()
record = risk.evaluate(model, stream, settings, bos_token_id=config.bos_token_id,
                       progress=progress)
if not tiny:
    torch.cuda.synchronize()
wall = time.perf_counter() - t0
# evaluate feeds P + S = chunk_tokens positions per chunk (BOS + chunk minus its last token)
tokens_in = record.tokens_scored
counted = flops(tokens_in, chunk_tokens)
mfu = counted / record.seconds / (args.peak_tflops * 1e12)
result = {
    "benchmark": "gpu",
    "device": name,
    "model": "Llama-2-7B shape, random weights" if not tiny else "tiny llama (dry run)",
    "parameters": parameters,
    "dtype": str(dtype).removeprefix("torch."),
    "chunks": chunks,
    "chunk_tokens": chunk_tokens,
    "tokens_scored": record.tokens_scored,
    "model_build_seconds": build_seconds,
    "evaluate_seconds": record.seconds,
    "evaluate_wall_seconds_incl_setup": wall,
    "tokens_per_second": record.tokens_scored / record.seconds,
    "flops_counted": counted,
    "flops_rule": "2*(params - input embedding)*tokens + 2*layers*T*hidden*tokens (causal attn)",
    "peak_tflops": args.peak_tflops,
    "mfu": mfu,
    "target_mfu": 0.45,
    "naive_baseline": baseline,
    "peak_memory_gib": (torch.cuda.max_memory_allocated() / 2**30) if not tiny else None,
    "metrics": [{"name": m.name, "alpha": m.alpha, "k": m.k, "mean": m.sample_mean}
                for m in record.metrics],
}
print(f"evaluate: {result['tokens_per_second']:,.0f} tokens/s over {record.tokens_scored:,} "
      f"tokens in {record.seconds:.1f} s; MFU {100 * mfu:.1f}% of {args.peak_tflops:g} TFLOP/s "
      f"(target 45%)")
if result["peak_memory_gib"] is not None:
    print(f"peak GPU memory {result['peak_memory_gib']:.1f} GiB")
os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
temporary = f"{args.output}.tmp-{os.getpid()}"
with open(temporary, "w") as handle:
    json.dump(result, handle, indent=2)
    handle.write("\n")
os.replace(temporary, args.output)
print(f"wrote {args.output}")
PYTHON_SCRIPT
