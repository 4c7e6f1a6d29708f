"""certify.certificate: build, schema, canonical bytes, recompute (verify: test_verify.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _certificates import N_TOKENS, SAMPLES, build_from_artifact, make_artifacts, metrics

from certify import certificate as cert_module
from certify import signing
from certify._jcs import load_schema
from certify.bound import compute_bound
from certify.certificate import (
    Certificate,
    CertificateArtifact,
    CertificateBound,
    CertificateData,
    CertificateEvaluation,
    CertificateMetric,
    CertificateModel,
    CertificatePrior,
    CertificateSampling,
    CertificateTool,
    build_certificate,
    canonical_bytes,
    json_round_trip,
    load_certificate,
    parse_json_strict,
    recompute_bound,
    validate_certificate,
)
from certify.errors import CertificateError, VerificationError
from certify.records import (
    BoundInput,
    DatasetRecord,
    ModelRecord,
    RiskRecord,
    SamplingRecord,
)

FIXTURES = Path(__file__).parent / "fixtures" / "certificate"


@pytest.fixture(scope="module")
def artifacts(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two valid artifacts of the toy model (4-bit and 3-bit) and its vocabulary size."""
    return make_artifacts(toy_model, tmp_path_factory.mktemp("artifacts"))


# --------------------------------------------------------------------------- recompute


def test_recompute_bound_matches_and_names_copies(artifacts: dict[str, Any]) -> None:
    certificate = json_round_trip(build_from_artifact(artifacts["four"], artifacts["vocab_size"]))
    result = recompute_bound(certificate)
    assert result.n_tokens == N_TOKENS and result.prior.size_bytes > 0
    certificate["bound"]["prior"]["size_bytes"] += 1
    with pytest.raises(VerificationError, match=r"bound\.prior\.size_bytes"):
        recompute_bound(certificate)


def test_compare_numbers_tolerance() -> None:
    differences, exact, close = cert_module.compare_numbers(
        {"a": 1.0, "b": [2, True], "c": "x"}, {"a": 1.0 + 2**-50, "b": [2, True], "c": "x"}
    )
    assert differences == [] and exact == 1 and close == 1
    differences, _, _ = cert_module.compare_numbers({"a": 1.0}, {"a": 1.0 + 1e-9})
    assert differences and "bound.a" in differences[0]
    differences, _, _ = cert_module.compare_numbers({"a": True}, {"a": 1})
    assert differences
    differences, _, _ = cert_module.compare_numbers({"n": 3}, {"n": 4})
    assert differences


# --------------------------------------------------------------------------- schema


def test_validate_rejects_python_non_finite() -> None:
    golden = json.loads((FIXTURES / "golden.certificate.json").read_bytes())
    for bad in (float("nan"), float("inf")):
        changed = copy.deepcopy(golden)
        changed["bound"]["delta"] = bad
        with pytest.raises(CertificateError, match="finite"):
            validate_certificate(changed)
        with pytest.raises(CertificateError):
            canonical_bytes(changed)


def test_parse_json_strict() -> None:
    assert parse_json_strict(b'{"a": 1.5}') == {"a": 1.5}
    for bad in (b'{"a": NaN}', b'{"a": 1e999}', b'{"a": 1, "a": 2}', b"\xff", b"{"):
        with pytest.raises(CertificateError):
            parse_json_strict(bad)
    with pytest.raises(CertificateError, match="surrogate"):
        validate_certificate(parse_json_strict(b'{"a": "\\ud800"}'))


# --------------------------------------------------------------------------- golden


#: (certificate, envelope, public key): version 1 (kept as made by version 1) and version 2
GOLDENS = [
    ("golden.certificate.json", "golden.certificate.dsse.json", "golden.pub.pem"),
    ("golden-v2.certificate.json", "golden-v2.certificate.dsse.json", "golden-v2.pub.pem"),
    (
        "golden-v2-sampled.certificate.json",
        "golden-v2-sampled.certificate.dsse.json",
        "golden-v2.pub.pem",
    ),
]


@pytest.mark.parametrize(("name", "envelope", "key"), GOLDENS)
def test_golden_certificate_is_canonical_and_valid(name: str, envelope: str, key: str) -> None:
    path = FIXTURES / name
    golden = load_certificate(path)
    assert canonical_bytes(golden) == path.read_bytes()
    validate_certificate(golden)
    assert golden["certificate_version"] == (1 if name == "golden.certificate.json" else 2)


@pytest.mark.parametrize(("name", "envelope", "key"), GOLDENS)
def test_golden_envelope_verifies_with_its_key(name: str, envelope: str, key: str) -> None:
    signed = json.loads((FIXTURES / envelope).read_bytes())
    public = (FIXTURES / key).read_bytes()
    statement, fingerprint = signing.verify_envelope(signed, public)
    assert fingerprint == signing.public_key_fingerprint(public)
    assert canonical_bytes(statement["predicate"]) == (FIXTURES / name).read_bytes()


def test_unknown_certificate_version_is_refused() -> None:
    golden = json.loads((FIXTURES / "golden-v2.certificate.json").read_bytes())
    golden["certificate_version"] = 3
    with pytest.raises(CertificateError, match="certificate_version"):
        validate_certificate(golden)


def test_published_numbers_round_up() -> None:
    assert cert_module.published_number(2.00000000001) == "2.001"
    assert cert_module.published_number(2.0) == "2.000"
    assert cert_module.published_number(9.99951) == "10.00"
    assert cert_module.published_number(4.2589e183) == "4.259e+183"
    assert cert_module.published_number(1.0000001e7) == "1.001e+07"
    assert cert_module.published_number(999999.0) == "1.000e+06"


# --------------------------------------------------------------------------- build


def test_build_rejects_records_of_different_runs(artifacts: dict[str, Any]) -> None:
    artifact = artifacts["four"]
    vocab = artifacts["vocab_size"]
    good = build_from_artifact(artifact, vocab)
    assert good["artifact"]["path"] == "model.certz"  # a name inside the run folder, never absolute
    assert set(good["tool"]["dependencies"]) >= {"torch", "transformers", "constriction", "numpy"}
    model = ModelRecord("m", "r", "LlamaForCausalLM", artifact.parameters, vocab)
    data = DatasetRecord("d", "r", "c" * 64, N_TOKENS, 1, "d" * 64, documents_sha256="e" * 64)
    risk = RiskRecord(
        vocab,
        N_TOKENS,
        64,
        0,
        SamplingRecord("length_proportional_with_replacement", SAMPLES, 0, stream="certification"),
        metrics(),
        "cpu",
        "float32",
        10,
        1.0,
        bound_version=2,
    )
    other_size = compute_bound(
        BoundInput(vocab, N_TOKENS, artifact.size_bytes + 1, metrics(), heldout=True)
    )
    with pytest.raises(CertificateError, match="size_bytes"):
        build_certificate(model, artifact, data, risk, other_size)
    other_stats = compute_bound(
        BoundInput(vocab, N_TOKENS, artifact.size_bytes, metrics()[:2], heldout=True)
    )
    with pytest.raises(CertificateError, match="statistics"):
        build_certificate(model, artifact, data, risk, other_stats)
    version_1 = compute_bound(
        BoundInput(vocab, N_TOKENS, artifact.size_bytes, metrics(), bound_version=1)
    )
    with pytest.raises(CertificateError, match="version 2"):
        build_certificate(model, artifact, data, risk, version_1)


def test_write_certificate_is_atomic_and_canonical(tmp_path: Path) -> None:
    golden = load_certificate(FIXTURES / "golden.certificate.json")
    target = tmp_path / "c.json"
    written = cert_module.write_certificate(golden, target)
    assert target.read_bytes() == written == canonical_bytes(golden)
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]
    broken = copy.deepcopy(golden)
    del broken["bound"]
    with pytest.raises(CertificateError):
        cert_module.write_certificate(broken, target)
    assert target.read_bytes() == written


def test_large_integral_floats_survive_the_canonical_round_trip() -> None:
    """JCS writes 2.0**60 as an integer literal; reading it back must give the float."""
    from certify.certificate import canonical_bytes, parse_json_strict

    value = {"perplexity_bound": 2.0**60, "small": 3, "fraction": 0.5}
    text = canonical_bytes(value)
    assert b"1152921504606847000" in text  # ES6 shortest form, no exponent
    assert parse_json_strict(text) == value
    assert canonical_bytes(parse_json_strict(text)) == text
    with pytest.raises(CertificateError):
        parse_json_strict(b'{"n": 1' + b"0" * 400 + b"}")  # beyond float64


def test_the_certificate_type_has_exactly_the_schemas_fields() -> None:
    """The TypedDicts the code passes around name every field of the schemas (versions 1
    and 2), no more: a key both versions require is required, any other is optional."""
    schemas = [load_schema("certificate"), load_schema("certificate-v2")]

    def node(schema: dict[str, Any], *path: str) -> dict[str, Any]:
        current: dict[str, Any] = schema
        for key in path:
            if key == "$metric":
                defs = schema["$defs"]
                current = defs["metric"] if "metric" in defs else defs["metric_v2"]
            else:
                current = current["properties"][key]
            while "$ref" in current:
                current = schema["$defs"][current["$ref"].rsplit("/", 1)[1]]
        return current

    pairs = [
        (Certificate, ()),
        (CertificateTool, ("tool",)),
        (CertificateModel, ("model",)),
        (CertificateArtifact, ("artifact",)),
        (CertificateData, ("data",)),
        (CertificateSampling, ("data", "sampling")),
        (CertificateEvaluation, ("evaluation",)),
        (CertificateBound, ("bound",)),
        (CertificatePrior, ("bound", "prior")),
        (CertificateMetric, ("$metric",)),
    ]
    for typed, path in pairs:
        shapes = [node(schema, *path) for schema in schemas]
        required = set.intersection(*(set(shape["required"]) for shape in shapes))
        properties = set.union(*(set(shape["properties"]) for shape in shapes))
        assert typed.__required_keys__ == required, typed.__name__
        fields = typed.__required_keys__ | typed.__optional_keys__
        assert fields == properties, typed.__name__
