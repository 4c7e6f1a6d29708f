"""A real, signed run folder built from a toy model (for the hub and card tests).

Everything is real except the risk statistics, which are made up (the risk stage is
tested elsewhere): the artifact is compressed from a toy model, the bound computed
from its exact size, the certificate built, the card and plot rendered, and the
folder signed last (certificate.dsse.json, public key, model.sig) as `certify run` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certify.records import (
    DatasetRecord,
    MetricSample,
    ModelRecord,
    QuantizationSettings,
    RiskRecord,
    SamplingRecord,
)

#: enough for a non-vacuous bits (α = 0.1) and top-10 bound; α = 0.01 and top-1 stay vacuous
N_TOKENS = 10_000_000
VOCAB_FALLBACK = 256


def make_run_folder(out: Path, toy_model: Path, *, card: bool = True) -> dict[str, Any]:
    """Write a complete run folder in ``out``; returns {certificate, public_key, fingerprint}."""
    from certify import card as card_module
    from certify import signing
    from certify.bound import compute_bound
    from certify.certificate import build_certificate, write_certificate
    from certify.container import compress_model
    from certify.models import resolve_model
    from certify.records import BoundInput

    out.mkdir(parents=True, exist_ok=True)
    resolved = resolve_model(str(toy_model))
    artifact = compress_model(
        resolved, QuantizationSettings(bits=4, group_size=32), out / "model.certz"
    )
    vocab = int(resolved.config.get("vocab_size") or VOCAB_FALLBACK)
    model = ModelRecord(
        source=resolved.source,
        revision=resolved.revision,
        architecture=resolved.architecture,
        parameters=artifact.parameters,
        vocab_size=vocab,
    )
    data = DatasetRecord(
        source="toy/texts",
        revision="0123456789abcdef0123456789abcdef01234567",
        tokenizer_sha256="a" * 64,
        n_tokens=N_TOKENS,
        documents=40,
        shards_sha256="b" * 64,
        documents_sha256="c" * 64,
    )
    metrics = (
        MetricSample("bits", 3.2, 0.3, 64, alpha=0.01, square_mean=4.0, square_variance=1.0),
        MetricSample("bits", 3.0, 0.3, 64, alpha=0.1, square_mean=3.5, square_variance=1.0),
        MetricSample("top_k_error", 0.7, 0.01, 64, k=1, square_mean=0.2, square_variance=0.01),
        MetricSample("top_k_error", 0.3, 0.01, 64, k=10, square_mean=0.15, square_variance=0.01),
    )
    risk = RiskRecord(
        vocab_size=vocab,
        n_tokens=N_TOKENS,
        chunk_tokens=128,
        context_tokens=0,
        sampling=SamplingRecord(
            "length_proportional_with_replacement", 64, 0, stream="certification"
        ),
        metrics=metrics,
        device="cpu",
        dtype="float32",
        tokens_scored=64 * 128,
        seconds=1.0,
        bound_version=2,
    )
    bound = compute_bound(
        BoundInput(
            vocab_size=vocab,
            n_tokens=N_TOKENS,
            size_bytes=artifact.size_bytes,
            metrics=metrics,
        )
    )
    certificate = build_certificate(
        model, artifact, data, risk, bound, created_at="2026-01-01T00:00:00Z"
    )
    certificate_bytes = write_certificate(certificate, out / "certificate.json")
    keys = out.parent / f"{out.name}-keys"
    pair = signing.generate_key(keys, force=True)
    if card:
        import hashlib

        text = card_module.render_card(
            certificate,
            key_fingerprint=pair.fingerprint,
            base_model=None,
            dataset="toy/texts",
            certificate_sha256_hex=hashlib.sha256(certificate_bytes).hexdigest(),
        )
        (out / "README.md").write_text(text, encoding="utf-8")
        card_module.plot_bound(certificate, out / "bound.png")
    # the one signing path, last: certificate.dsse.json, the public key, model.sig
    signing.sign_run(out, certificate, pair.private_key_path)
    return {
        "certificate": certificate,
        "public_key": Path(pair.public_key_path),
        "private_key": Path(pair.private_key_path),
        "fingerprint": pair.fingerprint,
    }
