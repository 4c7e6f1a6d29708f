"""risk.json: the measured risk as ``certify bound`` reads it (schema ``risk``)."""

from __future__ import annotations

from typing import Any

from certify._jcs import schema_error
from certify._version import __version__
from certify.errors import InvalidInputError
from certify.records import (
    DatasetRecord,
    MetricSample,
    RiskRecord,
    SampledDataRecord,
    SamplingRecord,
    to_dict,
)

#: version of the risk JSON (``risk_to_dict``), stored as ``evaluation.format_version``; it
#: is the DESIGN.md version whose token rules were used (1 is still read)
RISK_FORMAT_VERSION = 2


def risk_to_dict(risk: RiskRecord) -> dict[str, Any]:
    """The risk JSON: ``certify bound``'s input (vocab_size, n_tokens, metrics) plus context.

    Keys other than ``vocab_size``, ``n_tokens`` and ``metrics`` are informational and
    ignored by ``certify bound``; the format version is ``evaluation.format_version``.
    """
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
        if metric.square_mean is not None:
            entry.update(square_mean=metric.square_mean, square_variance=metric.square_variance)
        metrics.append(entry)
    counted: dict[str, Any] = {"n_tokens": risk.n_tokens}
    if isinstance(risk.data, SampledDataRecord):  # n is bounded below from the draws
        data = risk.data
        counted = {
            "sampled": {
                "total_weight": data.total_weight,
                "accepted": data.accepted,
                "drawn": data.drawn,
            }
        }
    result: dict[str, Any] = {
        "kind": "risk",
        "certify_version": __version__,
        "vocab_size": risk.vocab_size,
        **counted,
        "metrics": metrics,
        "chunk_tokens": risk.chunk_tokens,
        "context_tokens": risk.context_tokens,
        "sampling": to_dict(risk.sampling),
        "device": risk.device,
        "dtype": risk.dtype,
        "tokens_scored": risk.tokens_scored,
        "seconds": risk.seconds,
        "evaluation": {"format_version": risk.bound_version},
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
        version = int(document["evaluation"]["format_version"])
        metrics = tuple(
            MetricSample(
                name=entry["name"],
                sample_mean=float(entry["sample_mean"]),
                sample_variance=float(entry["sample_variance"]),
                samples=int(entry["samples"]),
                alpha=float(entry["alpha"]) if entry.get("alpha") is not None else None,
                k=int(entry["k"]) if entry.get("k") is not None else None,
                square_mean=_optional_float(entry.get("square_mean")),
                square_variance=_optional_float(entry.get("square_variance")),
            )
            for entry in document["metrics"]
        )
        sampling = document["sampling"]
        data = document.get("data")
        return RiskRecord(
            vocab_size=int(document["vocab_size"]),
            n_tokens=None if document.get("n_tokens") is None else int(document["n_tokens"]),
            chunk_tokens=int(document["chunk_tokens"]),
            context_tokens=int(document["context_tokens"]),
            sampling=SamplingRecord(
                method=sampling["method"],
                samples=int(sampling["samples"]),
                seed=int(sampling["seed"]),
                seed_inputs=sampling.get("seed_inputs"),
                stream=sampling.get("stream"),
            ),
            metrics=metrics,
            device=str(document["device"]),
            dtype=str(document["dtype"]),
            tokens_scored=int(document["tokens_scored"]),
            seconds=float(document["seconds"]),
            data=_data_record(data),
            bound_version=version,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"not a risk document ({type(error).__name__}: {error}); "
            "expected the JSON written by certify evaluate"
        ) from error


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _data_record(data: dict[str, Any] | None) -> DatasetRecord | SampledDataRecord | None:
    if data is None:
        return None
    if "weight_rule" in data:
        return SampledDataRecord(**data)
    return DatasetRecord(**data)
