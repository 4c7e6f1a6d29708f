"""JSON as certify reads and writes it: RFC 8785 canonical bytes, strict parsing, schemas.

* :func:`canonical_bytes` -- the RFC 8785 (JCS) form of a value, after checking that
  every number is finite and every integer exact in an IEEE double (I-JSON).
* :func:`parse_json_strict` -- JSON that refuses NaN/Infinity, numbers beyond float64,
  duplicate keys and invalid UTF-8 (what a verifier must not accept silently).
* :func:`schema_error` -- the first violation of one of the package's JSON schemas
  (``certify/schemas/*.schema.json``, the only copy), as one readable line.
* :func:`sha256_json` -- a stable hash of a JSON value for cache keys.

Why by hand: ``rfc8785`` gives the canonical bytes, but the strict reading (the I-JSON
rules a verifier relies on) is a set of ``json.loads`` hooks no library packages.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import rfc8785

from certify.errors import CertificateError

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical_bytes",
    "check_json_values",
    "json_round_trip",
    "load_schema",
    "parse_json_strict",
    "schema_error",
    "sha256_json",
]

#: the largest integer JSON numbers carry exactly (I-JSON, RFC 7493), also RFC 8785's limit
MAX_SAFE_INTEGER = 2**53 - 1


# --------------------------------------------------------------------------- strict parsing


def _reject_constant(name: str) -> Any:
    raise CertificateError(f"{name} is not a JSON number", hint="certificates carry finite numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CertificateError(
            f"number {text[:40]} is beyond the float64 range",
            hint="certificates carry finite numbers",
        )
    return value


def _json_int(text: str) -> int | float:
    """An integer literal as RFC 8785 (I-JSON) means it: an IEEE double.

    JCS writes an integral float such as 2.0**60 in ES6 shortest form without
    exponent ("1152921504606847000"), so a large perplexity bound comes back as an
    integer literal; beyond 2^53 it is read as the float64 it denotes.
    """
    value = int(text)
    if abs(value) <= MAX_SAFE_INTEGER:
        return value
    return _finite_float(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CertificateError(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def parse_json_strict(data: bytes | str, *, what: str = "certificate") -> Any:
    """Parse JSON refusing NaN/Infinity, numbers beyond float64, duplicate keys, bad UTF-8.

    >>> parse_json_strict(b'{"a": 1, "b": [0.5]}')
    {'a': 1, 'b': [0.5]}
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as error:
        raise CertificateError(f"{what} is not UTF-8 (byte {error.start})") from error
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_json_int,
            object_pairs_hook=_unique_keys,
        )
    except CertificateError as error:
        raise CertificateError(f"{what}: {error}") from error
    except (json.JSONDecodeError, RecursionError, ValueError) as error:
        raise CertificateError(f"{what} is not valid JSON: {error}") from error


# --------------------------------------------------------------------------- canonical form


def check_json_values(value: Any, where: str = "$") -> None:
    """Every float finite, every integer exact (|x| ≤ 2^53 − 1), every string valid Unicode."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise CertificateError(
                f"{where}: string holds a lone surrogate (not Unicode)"
            ) from error
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CertificateError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CertificateError(f"{where}: integer {value} exceeds 2^53 - 1")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CertificateError(f"{where}: key {key!r} is not a string")
            check_json_values(key, f"{where} (a key)")
            check_json_values(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_values(item, f"{where}[{index}]")
        return
    raise CertificateError(f"{where}: {type(value).__name__} is not a JSON value")


def canonical_bytes(obj: Any) -> bytes:
    """The RFC 8785 canonical JSON bytes of ``obj`` (raises CertificateError if it has none).

    >>> canonical_bytes({"b": 1, "a": [1.0, "x"]})
    b'{"a":[1,"x"],"b":1}'
    """
    check_json_values(obj, "$")
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as error:
        raise CertificateError(f"cannot canonicalise: {error}") from error


def json_round_trip(obj: Any) -> Any:
    """``obj`` as a verifier reads it back: canonical JSON, parsed strictly."""
    return parse_json_strict(canonical_bytes(obj))


def sha256_json(value: Any) -> str:
    """sha256 of the sorted, compact JSON of ``value``: a stable key for caches and stages.

    Not RFC 8785 (cache keys need stability, not canonical numbers); never signed.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- schemas


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON schema ``certify/schemas/<name>.schema.json`` (package data, the only copy)."""
    resource = importlib.resources.files("certify") / "schemas" / f"{name}.schema.json"
    return json.loads(resource.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: Iterable[Any]) -> str:
    """A JSONPath-like location such as ``$.bound.metrics[0].alpha``."""
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def schema_error(document: Any, name: str) -> str | None:
    """The most relevant violation of schema ``name`` as "LOCATION: message", or None."""
    from jsonschema.exceptions import best_match

    errors = sorted(
        _validator(name).iter_errors(document),
        key=lambda e: (len(e.path), list(map(str, e.path))),
    )
    if not errors:
        return None
    error = best_match(errors)
    message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
    return f"{json_path(error.absolute_path)}: {message}"
