"""A certificate built from a real toy artifact with synthetic (valid) statistics.

Shared by tests/test_certificate.py and tests/test_verify.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certify.bound import compute_bound
from certify.certificate import build_certificate
from certify.container import compress_model
from certify.models import resolve_model
from certify.records import (
    BoundInput,
    DatasetRecord,
    MetricSample,
    ModelRecord,
    QuantizationSettings,
    RiskRecord,
    SamplingRecord,
)

N_TOKENS = 50_000
SAMPLES = 64


def metrics() -> tuple[MetricSample, ...]:
    return (
        MetricSample("bits", 7.5, 0.4, SAMPLES, alpha=0.01, square_mean=9.0, square_variance=2.0),
        MetricSample("bits", 7.9, 0.3, SAMPLES, alpha=0.1, square_mean=8.5, square_variance=1.5),
        MetricSample("top_k_error", 0.9, 0.01, SAMPLES, k=1, square_mean=0.1, square_variance=0.01),
    )


def build_from_artifact(artifact: Any, vocab_size: int, *, heldout: bool = False) -> dict[str, Any]:
    """A certificate from a real artifact record and synthetic (but valid) statistics."""
    model = ModelRecord(
        source="toy/llama",
        revision="sha256:" + "a" * 64,
        architecture="LlamaForCausalLM",
        parameters=artifact.parameters,
        vocab_size=vocab_size,
    )
    data = DatasetRecord(
        source="toy-texts",
        revision="sha256:" + "b" * 64,
        tokenizer_sha256="c" * 64,
        n_tokens=N_TOKENS,
        documents=40,
        shards_sha256="d" * 64,
        documents_sha256="e" * 64,
    )
    risk = RiskRecord(
        vocab_size=vocab_size,
        n_tokens=N_TOKENS,
        chunk_tokens=64,
        context_tokens=0,
        sampling=SamplingRecord(
            "length_proportional_with_replacement", SAMPLES, 0, stream="certification"
        ),
        metrics=metrics(),
        device="cpu",
        dtype="float32",
        tokens_scored=SAMPLES * 64,
        seconds=1.25,
        bound_version=2,
    )
    bound = compute_bound(
        BoundInput(
            vocab_size=vocab_size,
            n_tokens=N_TOKENS,
            size_bytes=artifact.size_bytes,
            metrics=metrics(),
            heldout=heldout,
        )
    )
    return build_certificate(model, artifact, data, risk, bound, created_at="2026-11-28T05:00:00Z")


def make_artifacts(toy_model: Path, folder: Path) -> dict[str, Any]:
    """Two valid artifacts of the toy model (4-bit and 3-bit) and its vocabulary size."""
    resolved = resolve_model(str(toy_model))
    four = compress_model(
        resolved, QuantizationSettings(bits=4, group_size=32), folder / "four" / "model.certz"
    )
    three = compress_model(
        resolved, QuantizationSettings(bits=3, group_size=32), folder / "three" / "model.certz"
    )
    return {"four": four, "three": three, "vocab_size": int(resolved.config["vocab_size"])}
