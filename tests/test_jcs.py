"""certify._jcs: canonical JSON, strict parsing, the package's JSON schemas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from certify._jcs import (
    MAX_SAFE_INTEGER,
    canonical_bytes,
    json_round_trip,
    load_schema,
    parse_json_strict,
    schema_error,
    sha256_json,
)
from certify.errors import CertificateError

SCHEMAS = Path(__file__).resolve().parent.parent / "certify" / "schemas"


def test_every_schema_is_one_valid_draft_2020_12_schema_in_the_package() -> None:
    names = sorted(path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.json"))
    assert {"certificate", "container-header", "risk", "token-index"} <= set(names)
    assert not (SCHEMAS.parent.parent / "schemas").exists()  # one copy only
    for name in names:
        schema = load_schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema == json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))


def test_schema_error_names_the_location() -> None:
    assert schema_error({"format": "certify-token-shards"}, "token-index") is not None
    problem = schema_error({"certificate_version": "one"}, "certificate")
    assert problem is not None and problem.startswith("$")


@pytest.mark.parametrize(
    "text",
    ['{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', '{"a": 1, "a": 2}', '{"a": '],
)
def test_strict_parsing_refuses(text: str) -> None:
    with pytest.raises(CertificateError):
        parse_json_strict(text)


def test_canonical_bytes_and_round_trip() -> None:
    value = {"b": 2.0**60, "a": [1.0, "é", None, True]}
    data = canonical_bytes(value)
    assert data == '{"a":[1,"é",null,true],"b":1152921504606847000}'.encode()
    assert json_round_trip(value) == {"a": [1, "é", None, True], "b": 2.0**60}
    with pytest.raises(CertificateError, match="2\\^53"):
        canonical_bytes({"n": MAX_SAFE_INTEGER + 1})
    with pytest.raises(CertificateError, match="finite"):
        canonical_bytes({"x": math.nan})


def test_sha256_json_ignores_key_order() -> None:
    assert sha256_json({"a": 1, "b": [2]}) == sha256_json({"b": [2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
