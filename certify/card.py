"""The model card (README.md) that shows a certificate on the Hub, and its plot.

Metadata goes where the Hub reads it (docs/CARD.md):

* ``model-index`` results, one per **non-vacuous** certified number (the headline
  bits-per-token bound at its α, its perplexity bound, each top-k error bound), named
  with α, δ and held-out mode, every value rounded up. ``verified`` is never set (on
  the Hub it means "evaluated by the Hub itself"). A vacuous statement, one no better
  than a uniform guess (log2 V bits; 1 − k/V top-k error), is listed only in the human
  section, marked vacuous, next to the trivial value it cannot beat.
* ``base_model`` only when the model certified was a Hub model (its revision goes in
  the ``certify`` key), and only when the card has none; ``base_model_relation:
  quantized`` with it. A local model or dataset is named by a short name and its
  content hash, never by its path: no local path reaches the card.
* ``tags`` (added when missing) and a namespaced ``certify`` key with the hashes, the
  sources and the headline numbers a reader needs to check the claim.

The human part sits between :data:`BEGIN_MARKER` and :data:`END_MARKER`: the claim,
the statements table (with the certifying form in version 2), the data needed for a
non-vacuous bound, the plot, the assumptions, and how to verify (the repo and commit
after a push, the run folder before).

:func:`update_card_text` edits an existing card in place: only the top-level YAML
keys it owns (``model-index`` results whose ``source.name`` is ``certify``, the
``certify`` key, missing tags, a missing ``base_model``) and the text between the
markers change. Every other YAML key keeps its exact bytes, other model-index
results keep their values, and running it twice gives byte-identical text.

Pure text functions; :func:`plot_bound` writes one PNG (atomically). The plot's and
the text's "how much data" numbers are recomputed with :func:`certify.bound.compute_bound`
from the certificate's recorded inputs, only n varying.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

import yaml

from certify._files import atomic_path
from certify._jcs import canonical_bytes
from certify.bound import (
    DEFAULT_DELTA_N_DIVISOR,
    LAMBDA_GRID,
    compute_bound,
    confidence_text,
    round_up_text,
    tokens_needed,
)
from certify.certificate import Certificate, bound_input_of, published_number
from certify.errors import CertifyError, InvalidInputError
from certify.records import BoundInput

BEGIN_MARKER = "<!-- certify:begin -->"
END_MARKER = "<!-- certify:end -->"
#: ``source.name`` of the model-index results this module owns (and replaces)
RESULT_SOURCE_NAME = "certify"
CARD_TAGS: tuple[str, ...] = ("certify", "generalization-bound", "compressed")
TASK_TYPE = "text-generation"
TASK_NAME = "Causal language modeling (certified risk bound)"
PAPER_URL = "https://arxiv.org/abs/2407.18158"
#: the signer's public key as published next to the certificate (signing.PUBLIC_KEY_NAME)
PUBLIC_KEY_FILE = "certify-signing-key.pub.pem"
PLOT_FILE = "bound.png"
DEFAULT_ENDPOINT = "https://huggingface.co"
#: significant digits of every published bound (rounded up)
DIGITS = 4

#: What ``certify verify`` establishes without the data. The same words are in
#: README.md and in ``certify verify --help`` (tests/test_card.py keeps them equal).
VERIFY_SCOPE = (
    "Without the data, `certify verify` establishes integrity and arithmetic: the files "
    "are the ones signed, the artifact decodes to the recorded weights, and every number "
    "of the bound follows from the recorded inputs. The token count n, the means and the "
    "variances are the signer's claims until `certify verify --recompute-risk` "
    "re-measures them on the data."
)
#: certify is not on PyPI: README.md's install is `make install` in a checkout
INSTALL_LINES = (
    "# certify is not on PyPI: in a checkout of its source, as its README says",
    "make install && source .venv/bin/activate",
)

_FRONT_MATTER = re.compile(r"\A(\ufeff?---[ \t]*\r?\n)(.*?)(\r?\n---[ \t]*(?:\r?\n|\Z))", re.DOTALL)
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z0-9_][^:#\s]*|\"[^\"]+\"|'[^']+'):(\s|$)")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOCAL_FINGERPRINT = re.compile(r"^(sha256|units):([0-9a-f]{64})$")


# --------------------------------------------------------------------------- numbers


def up(value: float, digits: int = DIGITS) -> str:
    """``value`` rounded UP to ``digits`` significant digits (scientific when large)."""
    return published_number(float(value), digits)


def _up_float(value: float, digits: int = DIGITS) -> float:
    """The published (rounded-up) value as a float, never below ``value``."""
    return float(up(value, digits))


def _trivial_text(trivial: float, kind: str) -> str:
    """The trivial value, with enough digits that 1 − k/V never prints as 1."""
    if kind == "bits":
        return up(trivial)
    gap = 1.0 - trivial  # k/V
    digits = max(DIGITS, math.ceil(-math.log10(gap)) + 2) if gap > 0 else DIGITS
    return round_up_text(trivial, significant=digits)


def _tokens_down(count: int) -> str:
    """A token count this run has at least: exact below a million, else 2 digits rounded
    DOWN (so the card never overstates the data; a count needed is rounded up instead)."""
    count = int(count)
    if count < 1_000_000:
        return _count(count)
    exponent = len(str(count)) - 1
    leading = count // 10 ** (exponent - 1)
    return f"{leading // 10}.{leading % 10}e+{exponent:02d}"


def _delta_text(delta: float) -> str:
    """δ as written (shortest round-trip decimal)."""
    return repr(float(delta))


def _count(value: int) -> str:
    return f"{int(value):,}"


def _lambda_text(lam: float) -> str:
    """λ of the fixed grid as 2^(−j/4) (exact), else its shortest decimal."""
    for j, grid in enumerate(LAMBDA_GRID, start=1):
        if grid == lam:
            return f"2^(−{j}/4)"
    return repr(float(lam))


def _bound(certificate: Mapping[str, Any]) -> Mapping[str, Any]:
    bound = certificate.get("bound")
    if not isinstance(bound, Mapping) or not isinstance(bound.get("metrics"), list):
        raise InvalidInputError(
            "the certificate has no bound.metrics list",
            field="certificate",
            hint="pass a certificate.json written by `certify run`",
        )
    return bound


def _version(certificate: Mapping[str, Any]) -> int:
    version = certificate.get("certificate_version")
    return int(version) if isinstance(version, int) and not isinstance(version, bool) else 1


def certificate_sha256(certificate: Mapping[str, Any]) -> str:
    """sha256 of the certificate's canonical (RFC 8785) bytes, i.e. of certificate.json."""
    return hashlib.sha256(canonical_bytes(dict(certificate))).hexdigest()


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceRef:
    """How the card names a model or dataset: a Hub id at a commit, or a short local name.

    A source is a Hub source when its recorded revision is a 40-hex commit (what
    certify records for Hub repos; local sources get a ``sha256:``/``units:`` content
    fingerprint) and it reads as a repo id. A local source's path never reaches the
    card: only its last component and its fingerprint.
    """

    hub: bool
    #: the Hub id, or the short name of a local source
    name: str
    #: the Hub commit, or a local source's fingerprint ("sha256:<hex>" / "units:<hex>")
    revision: str | None
    #: the source exactly as recorded (to substitute it in recorded sentences)
    recorded: str

    def metadata(self) -> dict[str, Any]:
        """The ``certify`` key's entry: {id, revision} or {name, sha256|fingerprint}."""
        if self.hub:
            return {"id": self.name, "revision": self.revision}
        entry: dict[str, Any] = {"name": self.name}
        match = _LOCAL_FINGERPRINT.match(self.revision or "")
        if match and match.group(1) == "sha256":
            entry["sha256"] = match.group(2)
        elif self.revision:
            entry["fingerprint"] = self.revision
        return entry

    def text(self) -> str:
        """Markdown for the card body."""
        if self.hub:
            revision = f" at revision `{self.revision[:12]}`" if self.revision else ""
            return f"`{self.name}`{revision}"
        fingerprint = f", {self.revision}" if self.revision else ""
        return f"`{self.name}` (local{fingerprint})"


def _looks_local(source: str) -> bool:
    return (
        source.startswith(("/", ".", "~", "\\"))
        or "\\" in source
        or re.match(r"^[A-Za-z]:", source) is not None
        or _HUB_ID.match(source) is None
    )


def short_name(source: str, fallback: str = "local") -> str:
    """The last component of a path (``/home/a/smol-hf/`` → ``smol-hf``), never a path."""
    name = PurePosixPath(str(source).replace("\\", "/").rstrip("/")).name
    return name if name not in ("", ".", "..") and ":" not in name else fallback


def source_ref(source: Any, revision: Any, fallback: str = "local") -> SourceRef:
    """The card's reference to a recorded (source, revision) pair."""
    text = str(source or "")
    rev = str(revision) if revision else None
    if rev is not None and _COMMIT.match(rev) and not _looks_local(text):
        return SourceRef(hub=True, name=text, revision=rev, recorded=text)
    return SourceRef(hub=False, name=short_name(text, fallback), revision=rev, recorded=text)


def _model_ref(certificate: Mapping[str, Any]) -> SourceRef:
    model = certificate.get("model") or {}
    return source_ref(model.get("source"), model.get("revision"), "local-model")


def _data_ref(certificate: Mapping[str, Any]) -> SourceRef:
    data = certificate.get("data") or {}
    return source_ref(data.get("source"), data.get("revision"), "local-data")


def _scrub(text: str, refs: Sequence[SourceRef]) -> str:
    """A recorded sentence with every local source replaced by its short name."""
    for ref in sorted(refs, key=lambda item: -len(item.recorded)):
        if not ref.hub and ref.recorded and ref.recorded != ref.name:
            text = text.replace(ref.recorded, ref.name)
    return text


def _dataset_fields(
    certificate: Mapping[str, Any], dataset: Mapping[str, Any] | str | None
) -> dict[str, Any]:
    """{hub, id, name, config, split, revision} of the certified data (no local path)."""
    data = certificate.get("data") or {}
    given = {"id": dataset} if isinstance(dataset, str) else dict(dataset or {})
    ref = _data_ref(certificate)
    identifier = given.get("id")
    if identifier and str(identifier) != str(data.get("source")):
        # named explicitly (say, the Hub id of data certified from a local copy)
        text = str(identifier)
        if _looks_local(text):
            ref = SourceRef(False, short_name(text, "local-data"), ref.revision, text)
        else:
            revision = given.get("revision")
            commit = str(revision) if revision and _COMMIT.match(str(revision)) else None
            ref = SourceRef(True, text, commit, text)
    options = ((data.get("sampled") or {}).get("source_options")) or {}
    config = given.get("config") or (options.get("config") if ref.hub else None)
    split = given.get("split") or (options.get("split") if ref.hub else None)
    return {
        "hub": ref.hub,
        "id": ref.name,
        "config": str(config) if config else None,
        "split": str(split) if split else None,
        "revision": ref.revision,
        "ref": ref,
    }


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    """One certified statement as the card shows it."""

    kind: str
    #: α of a bits statement, k of a top-k statement
    parameter: float | int
    label: str
    bound: float
    trivial: float
    vacuous: bool
    headline: bool
    sample_mean: float
    sampling_term: float
    complexity_term: float
    #: version 2: "azuma" or "freedman" (None in version 1)
    certified_by: str | None
    freedman_lambda: float | None

    def form_text(self) -> str:
        if self.certified_by == "freedman":
            lam = f", λ = {_lambda_text(self.freedman_lambda)}" if self.freedman_lambda else ""
            return f"empirical Freedman{lam}"
        if self.certified_by == "azuma":
            return "Azuma"
        return "—"

    def unit(self) -> str:
        return "bits" if self.kind == "bits" else ""

    def bound_text(self) -> str:
        return up(self.bound)

    def trivial_text(self) -> str:
        return _trivial_text(self.trivial, self.kind)


def _vocab_size(certificate: Mapping[str, Any]) -> int:
    bound = _bound(certificate)
    vocab = bound.get("vocab_size") or (certificate.get("model") or {}).get("vocab_size")
    if not isinstance(vocab, int) or vocab < 2:
        raise InvalidInputError("the certificate has no vocab_size", field="bound.vocab_size")
    return vocab


def statements(certificate: Mapping[str, Any]) -> list[Statement]:
    """Every statement of the certificate, with its trivial value and vacuity."""
    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    vocab = _vocab_size(certificate)
    headline_alpha = summary.get("alpha")
    found = []
    for metric in bound["metrics"]:
        if metric.get("name") == "bits":
            alpha = float(metric["alpha"])
            trivial = math.log2(vocab)
            kind, parameter, label = "bits", alpha, f"bits per token, α = {alpha!r}"
            headline = headline_alpha is not None and alpha == float(headline_alpha)
        else:
            k = int(metric["k"])
            trivial = 1.0 - k / vocab
            kind, parameter, label, headline = "top_k_error", k, f"top-{k} error rate", False
        value = float(metric["bound"])
        found.append(
            Statement(
                kind=kind,
                parameter=parameter,
                label=label,
                bound=value,
                trivial=trivial,
                vacuous=value >= trivial,
                headline=headline,
                sample_mean=float(metric["sample_mean"]),
                sampling_term=float(metric["sampling_term"]),
                complexity_term=float(metric["complexity_term"]),
                certified_by=metric.get("certified_by") if _version(certificate) >= 2 else None,
                freedman_lambda=metric.get("freedman_lambda"),
            )
        )
    return found


def _headline(found: Sequence[Statement]) -> Statement | None:
    """The statement the plot's left panel and the "how much data" line follow."""
    for statement in found:
        if statement.headline:
            return statement
    return found[0] if found else None


# --------------------------------------------------------------------------- the bound against n


def _input_at(bound_input: BoundInput, n_tokens: int) -> BoundInput:
    """The recorded inputs with the martingale n moved to ``n_tokens``, all else fixed.

    Sampled mode: every martingale term uses n_lo, and δ_n is taken from δ first, so
    the exact-n input with n = n_lo and δ' = δ − δ_n (same ``delta_split``) has the same
    δ_c, δ_s, unions and terms, hence the same bound, for every n_lo ≥ 2 (at n_lo = 1
    sampled mode's Azuma term takes the larger of m = 1 and m = 2).
    """
    if bound_input.sampled is None:
        return dataclasses.replace(bound_input, n_tokens=int(n_tokens))
    delta_n = (
        bound_input.delta_n
        if bound_input.delta_n is not None
        else bound_input.delta / DEFAULT_DELTA_N_DIVISOR
    )
    return dataclasses.replace(
        bound_input,
        n_tokens=int(n_tokens),
        sampled=None,
        delta_n=None,
        delta=bound_input.delta - delta_n,
    )


def _recorded_n(certificate: Mapping[str, Any]) -> int:
    bound = _bound(certificate)
    n = bound.get("n_tokens") or bound.get("n_lower_bound")
    if not isinstance(n, int):
        raise InvalidInputError("the certificate records no n", field="bound.n_tokens")
    return n


def bound_against_n(
    certificate: Mapping[str, Any], n_values: Sequence[int]
) -> tuple[list[int], list[list[float]]]:
    """(the n values, sorted, and the bound of each statement at each) with the recorded
    statistics held fixed.

    Pure math: :func:`certify.bound.compute_bound` on the certificate's inputs with only
    n changed (in sampled mode, n's lower bound n_lo; values below 2 are raised to 2).
    """
    bound_input = bound_input_of(cast(Certificate, certificate))
    low = 2 if bound_input.sampled is not None else 1
    used = sorted({max(low, int(n)) for n in n_values})
    curves: list[list[float]] = [[] for _ in bound_input.metrics]
    for n in used:
        result = compute_bound(_input_at(bound_input, n))
        for curve, metric in zip(curves, result.metrics, strict=True):
            curve.append(float(metric.bound))
    return used, curves


def non_vacuous_from(certificate: Mapping[str, Any], index: int | None = None) -> int | None:
    """The smallest n at which statement ``index`` (default: the headline) is non-vacuous.

    Statistics held fixed, as in :func:`bound_against_n`. None when it stays vacuous
    at every n (the sample mean plus the sampling term already reach the trivial value).
    Every form falls as n grows (docs/MATH.md), so a bisection over integers finds it.
    """
    found = statements(certificate)
    if index is None:
        headline = _headline(found)
        if headline is None:
            return None
        index = found.index(headline)
    target = found[index]
    if target.sample_mean + target.sampling_term >= target.trivial:
        return None
    bound_input = bound_input_of(cast(Certificate, certificate))

    def value(n: int) -> float:
        return float(compute_bound(_input_at(bound_input, n)).metrics[index].bound)

    # n_lo = 1 cannot be a sampled certificate's (see _input_at)
    low = 2 if bound_input.sampled is not None else 1
    return tokens_needed(value, target.trivial, strict=True, min_tokens=low)


# --------------------------------------------------------------------------- metadata


def _metric_suffix(certificate: Mapping[str, Any]) -> str:
    bound = _bound(certificate)
    held = ", held-out mode" if bound.get("heldout") else ""
    delta = float(bound.get("delta", 0.05))
    return f"{confidence_text(delta)} confidence, δ = {_delta_text(delta)}{held}"


def _metric_args(certificate: Mapping[str, Any], **first: Any) -> dict[str, Any]:
    bound = _bound(certificate)
    args = {**first, "delta": float(bound.get("delta", 0.05))}
    if bound.get("heldout"):
        args["heldout"] = True
    return args


def _eval_results(
    certificate: Mapping[str, Any], dataset: dict[str, Any], source_url: str
) -> list[Any]:
    """One EvalResult per non-vacuous certified number (huggingface_hub's own type)."""
    from huggingface_hub import EvalResult

    summary = _bound(certificate).get("summary") or {}
    suffix = _metric_suffix(certificate)
    common = {
        "task_type": TASK_TYPE,
        "task_name": TASK_NAME,
        "dataset_type": dataset["id"],
        "dataset_name": dataset["id"] if dataset["hub"] else f"{dataset['id']} (local data)",
        "dataset_config": dataset["config"],
        "dataset_split": dataset["split"],
        "dataset_revision": dataset["revision"],
        "source_name": RESULT_SOURCE_NAME,
        "source_url": source_url,
    }
    results = []
    found = statements(certificate)
    headline = next((s for s in found if s.headline and s.kind == "bits"), None)
    if headline is not None and not headline.vacuous:
        alpha = headline.parameter
        results.append(
            EvalResult(
                metric_type="bits_per_token_bound",
                metric_name=f"Bits per token at α = {alpha!r}, certified upper bound ({suffix})",
                metric_value=_up_float(headline.bound),
                metric_args=_metric_args(certificate, alpha=alpha),
                **common,
            )
        )
        perplexity = summary.get("perplexity_bound")
        if isinstance(perplexity, int | float) and math.isfinite(perplexity):
            results.append(
                EvalResult(
                    metric_type="perplexity_bound",
                    metric_name=f"Perplexity at α = {alpha!r}, certified upper bound ({suffix})",
                    metric_value=_up_float(perplexity),
                    metric_args=_metric_args(certificate, alpha=alpha),
                    **common,
                )
            )
    for statement in found:
        if statement.kind == "top_k_error" and not statement.vacuous:
            k = int(statement.parameter)
            results.append(
                EvalResult(
                    metric_type=f"top_{k}_error_bound",
                    metric_name=f"Top-{k} error, certified upper bound ({suffix})",
                    metric_value=_up_float(statement.bound),
                    metric_args=_metric_args(certificate, k=k),
                    **common,
                )
            )
    return results


def _model_index_results(
    certificate: Mapping[str, Any], dataset: dict[str, Any], source_url: str, model_name: str
) -> list[dict[str, Any]]:
    """Our model-index ``results`` entries, as huggingface_hub's ModelCardData writes them."""
    from huggingface_hub import ModelCardData

    results = _eval_results(certificate, dataset, source_url)
    if not results:
        return []
    data = ModelCardData(model_name=model_name, eval_results=results).to_dict()
    return list(data["model-index"][0]["results"])


def _certify_key(
    certificate: Mapping[str, Any],
    key_fingerprint: str,
    certificate_sha: str,
    dataset: dict[str, Any],
    published: dict[str, Any] | None,
) -> dict[str, Any]:
    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    artifact = certificate.get("artifact") or {}
    found = statements(certificate)
    headline = next((s for s in found if s.headline and s.kind == "bits"), None)
    data_entry = dataset["ref"].metadata()
    if dataset["hub"]:
        data_entry = {"id": dataset["id"], "config": dataset["config"], "split": dataset["split"]}
        data_entry = {key: value for key, value in data_entry.items() if value is not None}
        data_entry["revision"] = dataset["revision"]
    perplexity = summary.get("perplexity_bound")
    key: dict[str, Any] = {
        "certificate": "certificate.json",
        "certificate_sha256": certificate_sha,
        "certificate_version": certificate.get("certificate_version"),
        "signature": "certificate.dsse.json",
        "key_fingerprint": key_fingerprint,
        "artifact": short_name(str(artifact.get("path") or "model.certz"), "model.certz"),
        "artifact_sha256": artifact.get("sha256"),
        "artifact_size_bytes": artifact.get("size_bytes"),
        "artifact_format_version": artifact.get("format_version"),
        "tool_version": (certificate.get("tool") or {}).get("version"),
        "model": _model_ref(certificate).metadata(),
        "dataset": data_entry,
        "data_mode": "sampled" if bound.get("n_tokens") is None else "exact",
        **(
            {"n_tokens": bound.get("n_tokens")}
            if bound.get("n_tokens") is not None
            else {"n_lower_bound": bound.get("n_lower_bound")}
        ),
        "delta": bound.get("delta"),
        "confidence": confidence_text(float(bound.get("delta", 0.05))),
        "heldout": bool(bound.get("heldout")),
        "alpha": headline.parameter if headline else None,
        "bits_per_token_bound": _up_float(headline.bound) if headline else None,
        "perplexity_bound": _up_float(perplexity)
        if isinstance(perplexity, int | float) and math.isfinite(perplexity)
        else None,
        "vacuous": headline.vacuous if headline else None,
        "top_k_error_bounds": {
            str(s.parameter): _up_float(s.bound) for s in found if s.kind == "top_k_error"
        },
        "vacuous_statements": [s.label for s in found if s.vacuous],
    }
    if published:
        key["published"] = published
    return key


# --------------------------------------------------------------------------- YAML surgery


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML text or None, body) of a card; the body keeps its exact bytes."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return None, text
    return match.group(2), text[match.end() :]


def _blocks(yaml_text: str) -> list[tuple[str | None, str]]:
    """The YAML split into top-level blocks: (key, lines) with key None for preamble."""
    blocks: list[tuple[str | None, str]] = []
    key: str | None = None
    lines: list[str] = []
    for line in yaml_text.splitlines(keepends=True):
        match = _TOP_LEVEL_KEY.match(line)
        if match is not None:
            if lines:
                blocks.append((key, "".join(lines)))
            key, lines = match.group(1).strip("\"'"), [line]
        else:
            lines.append(line)
    if lines:
        blocks.append((key, "".join(lines)))
    return blocks


def _dump(key: str, value: Any) -> str:
    from huggingface_hub.utils import yaml_dump

    return str(yaml_dump({key: value}, sort_keys=False))


def _load_yaml(yaml_text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(yaml_text) if yaml_text.strip() else {}
    except yaml.YAMLError as error:
        first = str(error).strip().splitlines()[0]
        raise InvalidInputError(
            f"the card's YAML metadata does not parse: {first}",
            field="README.md",
            hint="fix the YAML between the leading --- lines",
        ) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError("the card's YAML metadata is not a mapping", field="README.md")
    return data


def _merge_model_index(
    existing: Any, ours: list[dict[str, Any]], model_name: str
) -> list[dict[str, Any]] | None:
    """Replace our results inside ``existing`` (other entries and results untouched)."""
    entries = [dict(entry) for entry in existing] if isinstance(existing, list) else []
    for entry in entries:
        results = entry.get("results")
        if isinstance(results, list):
            entry["results"] = [
                result
                for result in results
                if not (
                    isinstance(result, Mapping)
                    and isinstance(result.get("source"), Mapping)
                    and result["source"].get("name") == RESULT_SOURCE_NAME
                )
            ]
    if not ours:
        # an entry left without results is ours alone: drop it (the Hub rejects empty ones)
        entries = [entry for entry in entries if entry.get("results") != []]
        return entries or None
    if entries:
        first = entries[0]
        first["results"] = list(first.get("results") or []) + ours
    else:
        entries = [{"name": model_name, "results": ours}]
    return entries


# --------------------------------------------------------------------------- body


def _table(found: Sequence[Statement], version: int) -> str:
    header = "| statement | bound | uniform guess | sample mean | sampling term | complexity term |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if version >= 2:
        header += " certified by |"
        rule += "---|"
    rows = [header, rule]
    for statement in found:
        label = statement.label
        if statement.headline:
            label = f"**{label}** (headline)"
        bound = statement.bound_text()
        if statement.vacuous:
            bound = f"{bound} **vacuous**"
        row = (
            f"| {label} | {bound} | {statement.trivial_text()} | {up(statement.sample_mean)} | "
            f"{up(statement.sampling_term)} | {up(statement.complexity_term)} |"
        )
        if version >= 2:
            row += f" {statement.form_text()} |"
        rows.append(row)
    return "\n".join(rows)


def _confidence_line(certificate: Mapping[str, Any]) -> str:
    bound = _bound(certificate)
    delta = float(bound.get("delta", 0.05))
    parts = []
    if bound.get("delta_n") is not None:
        parts.append(f"δ_n = {_delta_text(bound['delta_n'])} for n's lower bound")
    if bound.get("delta_c") is not None:
        parts.append(f"δ_c = {_delta_text(bound['delta_c'])} for the martingale terms")
    if bound.get("delta_s"):
        parts.append(f"δ_s = {_delta_text(bound['delta_s'])} for the sampling terms")
    method = {
        "bernstein": "empirical Bernstein",
        "hoeffding": "Hoeffding",
        "exhaustive": "none: every chunk was scored",
    }.get(str(bound.get("sampling_method")), str(bound.get("sampling_method")))
    return (
        f"- Confidence: {confidence_text(delta)} for all {bound.get('statements')} statements "
        f"together (δ = {_delta_text(delta)}: {', '.join(parts)}); sampling term: {method}"
    )


def _data_line(certificate: Mapping[str, Any], dataset: dict[str, Any]) -> str:
    bound = _bound(certificate)
    data = certificate.get("data") or {}
    ref: SourceRef = dataset["ref"]
    where = ref.text()
    if dataset.get("config"):
        where += f", config `{dataset['config']}`"
    if dataset.get("split"):
        where += f", split `{dataset['split']}`"
    sampled = data.get("sampled")
    if bound.get("n_tokens") is None and isinstance(sampled, Mapping):
        n_lo = int(bound.get("n_lower_bound") or sampled.get("n_lower_bound") or 0)
        return (
            f"- Data: {where}, read in sampled mode: n ≥ **{_count(n_lo)}** tokens, a lower "
            f"bound from {_count(sampled['accepted'])} accepted of {_count(sampled['drawn'])} "
            f"drawn units (total weight {_count(sampled['total_weight'])}), at δ_n = "
            f"{_delta_text(sampled['delta_n'])}, inside the confidence above"
        )
    return f"- Data: {where}; n = {_count(int(bound.get('n_tokens') or 0))} tokens (exact count)"


def _headline_lines(found: Sequence[Statement], certificate: Mapping[str, Any]) -> list[str]:
    summary = _bound(certificate).get("summary") or {}
    lines = []
    headline = next((s for s in found if s.headline and s.kind == "bits"), None)
    if headline is not None:
        if headline.vacuous:
            lines.append(
                f"- Bits per token (best α = {headline.parameter!r}): {headline.bound_text()}, "
                f"**vacuous**: no better than the {headline.trivial_text()} bits of a "
                "uniform guess (log2 V)"
            )
        else:
            perplexity = summary.get("perplexity_bound")
            extra = (
                f"; perplexity ≤ **{up(perplexity)}**"
                if isinstance(perplexity, int | float) and math.isfinite(perplexity)
                else ""
            )
            lines.append(
                f"- Bits per token (best α = {headline.parameter!r}): ≤ "
                f"**{headline.bound_text()}**{extra} (sample mean "
                f"{up(headline.sample_mean)}; a uniform guess scores "
                f"{headline.trivial_text()})"
            )
    top_k = [s for s in found if s.kind == "top_k_error"]
    if top_k:
        texts = [
            f"top-{s.parameter} ≤ {s.bound_text()}"
            + (f" (**vacuous**: ≥ 1 − {s.parameter}/V = {s.trivial_text()})" if s.vacuous else "")
            for s in top_k
        ]
        lines.append(f"- Top-k error: {'; '.join(texts)}")
    return lines


def _data_needed_line(certificate: Mapping[str, Any], found: Sequence[Statement]) -> str | None:
    headline = _headline(found)
    if headline is None:
        return None
    try:
        needed = non_vacuous_from(certificate, list(found).index(headline))
    except CertifyError:
        return None
    recorded = _recorded_n(certificate)
    what = f"the headline bound ({headline.label})" if headline.headline else headline.label
    trivial = f"{headline.trivial_text()}{' bits' if headline.kind == 'bits' else ''}"
    if needed is None:
        return (
            f"**How much data?** With these statistics, {what} stays vacuous at every n: its "
            f"sample mean plus sampling term already reach the uniform guess ({trivial}); more "
            "samples (a smaller sampling term) or a better model are needed, not more data."
        )
    n_word = "n's lower bound" if _bound(certificate).get("n_tokens") is None else "n"
    return (
        f"**How much data?** With the recorded statistics held fixed, {what} is below the "
        f"uniform guess ({trivial}) from {n_word} ≥ {up(needed, 2)} tokens on; this run has "
        f"{n_word} = {_tokens_down(recorded)} tokens."
    )


def plot_alt_text(certificate: Mapping[str, Any]) -> str:
    """One line that states the plot's numbers (the image's alt text)."""
    found = statements(certificate)
    headline = _headline(found)
    parts = []
    if headline is not None:
        unit = " bits" if headline.kind == "bits" else ""
        recorded = _recorded_n(certificate)
        text = (
            f"Left: the {headline.label} bound against the number of tokens n (log scale), "
            f"statistics held fixed: {headline.bound_text()}{unit} at this run's n = "
            f"{_count(recorded)}"
        )
        try:
            needed = non_vacuous_from(certificate, found.index(headline))
        except CertifyError:
            needed = None
        uniform = f"the uniform guess, {headline.trivial_text()}{unit}"
        if needed is None:
            text += f"; never below {uniform}"
        else:
            text += f"; below {uniform}, from n = {up(needed, 2)}"
        parts.append(text + ".")
    vacuous = [s.label for s in found if s.vacuous]
    parts.append(
        "Right: sample mean, sampling term and complexity term of each statement as a share "
        "of its uniform-guess value; "
        + (f"vacuous: {', '.join(vacuous)}." if vacuous else "none is vacuous.")
    )
    return " ".join(parts).replace("[", "(").replace("]", ")")


def _verify_lines(
    *, repo_id: str | None, revision: str | None, run_folder: str | None
) -> list[str]:
    lines = ["```bash", *INSTALL_LINES]
    if repo_id:
        pin = f" --revision {revision}" if revision else ""
        local = short_name(repo_id, "certified")
        key = f"{local}/{PUBLIC_KEY_FILE}"
        lines += [
            "# the repo at the certified commit, checked by OpenSSF model-signing",
            f"hf download {repo_id}{pin} --local-dir {local}",
            f"model_signing verify key --signature {local}/model.sig --public_key {key} {local}",
            "# every number of the bound, recomputed offline",
            f"certify verify {repo_id}{pin} --key {key}",
        ]
    else:
        folder = run_folder or "RUN_FOLDER"
        key = f"{folder}/{PUBLIC_KEY_FILE}"
        lines += [
            "# every published file, checked by OpenSSF model-signing",
            f"model_signing verify key --signature {folder}/model.sig --public_key {key} {folder}",
            "# every number of the bound, recomputed offline",
            f"certify verify {folder} --key {key}",
        ]
    lines.append("```")
    return lines


def _section(
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    certificate_sha: str,
    dataset: dict[str, Any],
    repo_id: str | None,
    revision: str | None,
    run_folder: str | None,
    plot_filename: str | None,
) -> str:
    bound = _bound(certificate)
    version = _version(certificate)
    artifact = certificate.get("artifact") or {}
    prior = bound.get("prior") or {}
    refs = [_model_ref(certificate), _data_ref(certificate)]
    found = statements(certificate)
    statement = _scrub(str(certificate.get("statement") or "").strip(), refs)
    model = _model_ref(certificate)
    heldout = bool(bound.get("heldout"))
    prior_text = f"ln 1/P(h) = {up(float(prior.get('nats', 0.0)))} nats"
    if heldout:
        prior_text += " (held-out mode: the file's size is not charged, only the search)"
    lines = [
        BEGIN_MARKER,
        "## Certified generalization bound",
        "",
        f"**Claim** (the signed certificate's statement). {statement}",
        "",
        *_headline_lines(found, certificate),
        _confidence_line(certificate),
        _data_line(certificate, dataset),
        f"- Model: compressed from {model.text()}; artifact "
        f"`{short_name(str(artifact.get('path') or 'model.certz'), 'model.certz')}`, "
        f"{_count(int(artifact.get('size_bytes') or 0))} bytes "
        f"({up(float(artifact.get('bits_per_parameter') or 0.0))} bits per parameter), sha256 "
        f"`{artifact.get('sha256')}`; {prior_text}",
    ]
    if heldout:
        lines.append(
            "- **Held-out mode**: the data is asserted to be independent of the model "
            "(never trained on); certify cannot check this."
        )
    lines += [
        "",
        _table(found, version),
        "",
        "Each bound = sample mean + sampling term + complexity term, every number rounded "
        f"up (token-level martingale bound, Lotfi et al. 2024, {PAPER_URL}"
        + (
            "; the complexity term is the smaller of the Azuma and empirical Freedman "
            "forms, both paid for in the confidence"
            if version >= 2
            else ""
        )
        + "). A **vacuous** statement is no better than a uniform guess (log2 V bits per "
        "token; top-k error 1 − k/V): it is listed here and never in the card's "
        "model-index metadata.",
    ]
    needed = _data_needed_line(certificate, found)
    if needed:
        lines += ["", needed]
    if plot_filename:
        lines += ["", f"![{plot_alt_text(certificate)}]({plot_filename})"]
    lines += ["", "### Assumptions", ""]
    assumptions = [_scrub(str(item).strip(), refs) for item in certificate.get("assumptions") or []]
    lines.extend(f"- {item}" for item in assumptions)
    if not assumptions:
        lines.append("- None recorded beyond the statement above.")
    lines += [
        "",
        "### How to verify",
        "",
        VERIFY_SCOPE,
        "",
        f"The certificate is signed with the key of fingerprint `{key_fingerprint}`; check it "
        "against one the publisher gave you through another channel, then:",
        "",
        *_verify_lines(repo_id=repo_id, revision=revision, run_folder=run_folder),
        "",
        f"- certificate.json sha256: `{certificate_sha}`",
        f"- signing key fingerprint: `{key_fingerprint}`",
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def _replace_section(body: str, section: str) -> str:
    begin = body.find(BEGIN_MARKER)
    end = body.find(END_MARKER, begin + 1) if begin >= 0 else -1
    if begin >= 0 and end >= 0:
        tail = body[end + len(END_MARKER) :]
        if tail.startswith("\r\n"):
            tail = tail[2:]
        elif tail.startswith("\n"):
            tail = tail[1:]
        return body[:begin] + section + tail
    if not body.strip():
        return section
    separator = "" if body.endswith("\n\n") else ("\n" if body.endswith("\n") else "\n\n")
    return body + separator + section


def relative_folder(folder: str | None) -> str | None:
    """The run folder as the card names it: as given when relative, never absolute.

    An absolute path (or one that climbs out with ``..``) is reduced to its last
    component: the reader has the folder, not the publisher's file system.
    """
    if not folder:
        return None
    text = str(folder).replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", text) or ".." in path.parts:
        return short_name(text, "RUN_FOLDER")
    normal = path.as_posix()
    return normal if normal not in ("", ".") else "."


# --------------------------------------------------------------------------- public


def _base_model(
    certificate: Mapping[str, Any], base_model: str | None, repo_id: str | None
) -> str | None:
    """``base_model`` to set: a Hub id only (the certified model's, or one named explicitly)."""
    model = _model_ref(certificate)
    if base_model and base_model != model.recorded:
        if _looks_local(base_model):
            raise InvalidInputError(
                f"base_model must be a Hub model id, got {base_model!r}",
                field="--base-model",
                hint="pass NAMESPACE/NAME of the model on the Hub, or omit it",
            )
        chosen: str | None = base_model
    else:
        chosen = model.name if model.hub else None
    if chosen is not None and repo_id is not None and chosen == repo_id:
        return None  # a card does not name its own repo as its base
    return chosen


def _prior_publication(current: Mapping[str, Any], certificate_sha: str) -> dict[str, Any] | None:
    """Where this card's certificate was published (kept while the certificate is the same)."""
    owned = current.get("certify")
    if not isinstance(owned, Mapping) or owned.get("certificate_sha256") != certificate_sha:
        return None
    published = owned.get("published")
    if isinstance(published, Mapping) and isinstance(published.get("repo_id"), str):
        revision = published.get("revision")
        return {
            "repo_id": published["repo_id"],
            "revision": revision if isinstance(revision, str) else None,
        }
    return None


def update_card_text(
    existing_text: str,
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    base_model: str | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    run_folder: str | None = None,
    endpoint: str | None = None,
    certificate_sha256_hex: str | None = None,
    plot_filename: str | None = PLOT_FILE,
) -> str:
    """Attach or refresh the certified bounds on ``existing_text``; idempotent.

    Only the ``certify``-owned parts change (see the module docstring); other YAML
    keys keep their bytes and the body outside the markers is untouched.
    ``certificate_sha256_hex`` is the sha256 of certificate.json's bytes (computed
    from the canonical form when omitted). Verify instructions: ``repo_id`` (and the
    commit ``revision`` that holds the certificate) after a push; else where the card
    says this certificate was published before; else ``run_folder``.
    """
    from huggingface_hub import ModelCard

    certificate_sha = certificate_sha256_hex or certificate_sha256(certificate)
    dataset_fields = _dataset_fields(certificate, dataset)
    yaml_text, body = split_front_matter(existing_text)
    yaml_text = yaml_text or ""
    current = _load_yaml(yaml_text)

    prior = _prior_publication(current, certificate_sha)
    if repo_id is None and prior is not None:
        repo_id = prior["repo_id"]
    if repo_id is not None and revision is None and prior and prior["repo_id"] == repo_id:
        revision = prior["revision"]
    if revision is not None and not _COMMIT.match(revision):
        raise InvalidInputError(
            f"the card pins a commit, got {revision!r}",
            field="revision",
            hint="pass the 40-hex commit that holds the certificate",
        )
    published: dict[str, Any] | None = None
    if repo_id:
        published = {"repo_id": repo_id, **({"revision": revision} if revision else {})}
    source_url = (
        f"{(endpoint or DEFAULT_ENDPOINT).rstrip('/')}/{repo_id}/blob/"
        f"{revision or 'main'}/certificate.json"
        if repo_id
        else PAPER_URL
    )
    model_name = (
        repo_id.split("/")[-1] if repo_id else f"{_model_ref(certificate).name.split('/')[-1]}"
    )
    ours = _model_index_results(certificate, dataset_fields, source_url, model_name)

    wanted: dict[str, Any] = {}
    removed: set[str] = set()
    tags = current.get("tags")
    tag_list = [tags] if isinstance(tags, str) else list(tags or [])
    missing_tags = [tag for tag in CARD_TAGS if tag not in tag_list]
    if missing_tags:
        wanted["tags"] = tag_list + missing_tags
    chosen_base = _base_model(certificate, base_model, repo_id)
    existing_base = current.get("base_model")
    model = _model_ref(certificate)
    if existing_base and not model.hub and existing_base == model.recorded:
        removed.add("base_model")  # a local path an older certify wrote: never valid
        existing_base = None
        if current.get("base_model_relation") == "quantized":
            removed.add("base_model_relation")
    if chosen_base and not existing_base:
        wanted["base_model"] = chosen_base
        if "base_model_relation" not in current:
            wanted["base_model_relation"] = "quantized"
    model_index = _merge_model_index(current.get("model-index"), ours, model_name)
    if model_index is None:
        if "model-index" in current:
            removed.add("model-index")
    elif model_index != current.get("model-index"):
        wanted["model-index"] = model_index
    certify_key = _certify_key(
        certificate, key_fingerprint, certificate_sha, dataset_fields, published
    )
    if certify_key != current.get("certify"):
        wanted["certify"] = certify_key

    blocks = [(key, text) for key, text in _blocks(yaml_text) if key not in removed]
    if blocks and not blocks[-1][1].endswith("\n"):
        key, text = blocks[-1]
        blocks[-1] = (key, text + "\n")
    for key, value in wanted.items():
        dumped = _dump(key, value)
        for index, (name, _) in enumerate(blocks):
            if name == key:
                blocks[index] = (key, dumped)
                break
        else:
            blocks.append((key, dumped))
    new_yaml = "".join(text for _, text in blocks).rstrip("\n")

    section = _section(
        certificate,
        key_fingerprint=key_fingerprint,
        certificate_sha=certificate_sha,
        dataset=dataset_fields,
        repo_id=repo_id,
        revision=revision,
        run_folder=relative_folder(run_folder),
        plot_filename=plot_filename,
    )
    new_body = _replace_section(body, section)
    match = _FRONT_MATTER.match(existing_text)
    opening = match.group(1) if match else "---\n"
    closing = match.group(3) if match else "\n---\n"
    if not closing.endswith("\n"):
        closing += "\n"
    text = f"{opening}{new_yaml}{closing}{new_body}"
    # The result must still be a card huggingface_hub reads, with our results in it.
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except ValueError as error:
        first = (str(error).strip().splitlines() or ["invalid metadata"])[0][:200]
        raise InvalidInputError(
            f"the card's metadata is not valid for the Hub: {first}",
            field="README.md",
            hint="fix the YAML metadata (e.g. a malformed model-index) and retry",
        ) from error
    mine = [
        result
        for result in getattr(card.data, "eval_results", None) or []
        if getattr(result, "source_name", None) == RESULT_SOURCE_NAME
    ]
    if len(mine) != sum(len(result["metrics"]) for result in ours):
        raise InvalidInputError("the updated card lost its certified results", field="README.md")
    return text


def render_card(
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    base_model: str | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    existing: str | None = None,
    plot_filename: str | None = PLOT_FILE,
    repo_id: str | None = None,
    revision: str | None = None,
    run_folder: str | None = None,
    endpoint: str | None = None,
    certificate_sha256_hex: str | None = None,
) -> str:
    """README.md text for a published run (a new card, or ``existing`` updated).

    ``dataset`` is ``{id, config, split, revision}`` (or just the id); missing fields
    come from the certificate's ``data``. ``base_model`` overrides the Hub id of the
    certified model (a local model gets none). Verify instructions name ``repo_id`` at
    the commit ``revision`` when given, else ``run_folder`` (never an absolute path).
    """
    if existing is None:
        model = _model_ref(certificate)
        title = repo_id.split("/")[-1] if repo_id else f"{model.name.split('/')[-1]} (certified)"
        origin = f"`{model.name}`" if model.hub else f"the local model `{model.name}`"
        existing = (
            f"# {title}\n\n"
            f"A compressed copy of {origin} in one file, `model.certz`, with a signed "
            "certificate that bounds its token-level risk. Load it with "
            '`certify.load("model.certz")`.\n'
        )
    return update_card_text(
        existing,
        certificate,
        key_fingerprint=key_fingerprint,
        base_model=base_model,
        dataset=dataset,
        repo_id=repo_id,
        revision=revision,
        run_folder=run_folder,
        endpoint=endpoint,
        certificate_sha256_hex=certificate_sha256_hex,
        plot_filename=plot_filename,
    )


def card_publication(card_text: str) -> dict[str, Any]:
    """What a certify card records about itself: fingerprint, dataset, publication."""
    yaml_text, body = split_front_matter(card_text)
    owned = _load_yaml(yaml_text or "").get("certify")
    if not isinstance(owned, Mapping) or BEGIN_MARKER not in body:
        return {}
    return dict(owned)


def pinned_revision(card_text: str | None, repo_id: str, certificate_sha: str) -> str | None:
    """The commit a certify card already pins for ``repo_id`` and this certificate, if any.

    That commit held this certificate when the card was pinned (commits never change),
    so keeping it keeps the card stable across pushes and ``certify card`` runs.
    """
    if not card_text:
        return None
    owned = card_publication(card_text)
    published = owned.get("published")
    if owned.get("certificate_sha256") != certificate_sha or not isinstance(published, Mapping):
        return None
    revision = published.get("revision")
    if published.get("repo_id") == repo_id and isinstance(revision, str):
        return revision
    return None


def pin_card(
    card_text: str,
    certificate: Mapping[str, Any],
    *,
    repo_id: str,
    revision: str,
    endpoint: str | None = None,
    certificate_sha256_hex: str | None = None,
) -> str | None:
    """The card with its verify instructions pinned to ``repo_id`` at commit ``revision``.

    For the commit after a push: the card of the pushed commit cannot name that
    commit, so the next one does. The key fingerprint and the dataset are the card's
    own (its ``certify`` key); nothing else changes. A card that already pins a commit
    of ``repo_id`` for this certificate keeps that commit. None when ``card_text`` is
    not a certify card of this certificate.
    """
    owned = card_publication(card_text)
    certificate_sha = certificate_sha256_hex or certificate_sha256(certificate)
    if not owned or owned.get("certificate_sha256") != certificate_sha:
        return None
    revision = pinned_revision(card_text, repo_id, certificate_sha) or revision
    stored = owned.get("dataset")
    stored = stored if isinstance(stored, Mapping) else {}
    dataset: dict[str, Any] = {}
    if stored.get("id"):
        dataset = {key: stored.get(key) for key in ("id", "config", "split", "revision")}
    return update_card_text(
        card_text,
        certificate,
        key_fingerprint=str(owned.get("key_fingerprint")),
        dataset=dataset or None,
        repo_id=repo_id,
        revision=revision,
        endpoint=endpoint,
        certificate_sha256_hex=certificate_sha,
    )


# --------------------------------------------------------------------------- the plot

_COLORS = ("#4C72B0", "#DD8452", "#55A868")
_TERMS = ("sample mean", "sampling term", "complexity term")
#: the Hub shows a card's images at about 800 px: drawn at twice that, fonts sized for it
_FIGURE_INCHES = (9.0, 4.8)
_FIGURE_DPI = 178


def _n_grid(recorded: int, needed: int | None) -> list[int]:
    """Log-spaced n around this run's n and the n where the bound turns non-vacuous."""
    low = max(1, min(recorded, needed or recorded) // 1000)
    # a bound that stays vacuous: go far enough right to show where it levels off
    high = max(recorded, needed or 0) * (1000 if needed is not None else 1_000_000)
    steps = 96
    ratio = (high / low) ** (1.0 / steps)
    return sorted({max(1, round(low * ratio**step)) for step in range(steps + 1)} | {recorded})


def _legend_below(ax: Any, columns: int) -> None:
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns, fontsize="small",
        frameon=False, handlelength=1.6, columnspacing=1.2,
    )  # fmt: skip


def _plot_against_n(ax: Any, certificate: Mapping[str, Any], found: Sequence[Statement]) -> None:
    headline = _headline(found)
    if headline is None:  # pragma: no cover - the schema requires a metric
        return
    family = [index for index, s in enumerate(found) if s.kind == headline.kind]
    recorded = _recorded_n(certificate)
    needed = non_vacuous_from(certificate, found.index(headline))
    used, curves = bound_against_n(certificate, _n_grid(recorded, needed))
    trivial = headline.trivial
    top = max(2.0 * trivial, 1.3 * (headline.sample_mean + headline.sampling_term))
    unit = " bits" if headline.kind == "bits" else ""
    ax.axhspan(trivial, top, color="#EEEEEE", zorder=0, label="vacuous region")
    ax.axhline(
        trivial, color="#555555", linestyle="--", linewidth=1.2,
        label=f"uniform guess, {headline.trivial_text()}{unit}",
    )  # fmt: skip
    for index in family:
        statement = found[index]
        ours = statement is headline
        name = f"α = {statement.parameter!r}" if statement.kind == "bits" else statement.label
        ax.plot(
            used, [min(value, 10 * top) for value in curves[index]],
            color="black" if ours else None, linewidth=2.2 if ours else 1.0,
            alpha=1.0 if ours else 0.7, label=name + (" (headline)" if ours else ""),
            zorder=3 if ours else 2,
        )  # fmt: skip
    ax.axvline(recorded, color="#C44E52", linewidth=1.2)
    if headline.bound < top:
        ax.plot([recorded], [headline.bound], "o", color="#C44E52", zorder=4)
    right_half = math.log(recorded / used[0]) > 0.6 * math.log(used[-1] / used[0])
    ax.annotate(
        f"this run\nn = {_tokens_down(recorded)}", (recorded, 0.97 * top),
        textcoords="offset points", xytext=(-5 if right_half else 5, 0),
        ha="right" if right_half else "left", va="top", color="#C44E52", fontsize="small",
    )  # fmt: skip
    if needed is not None:
        ax.plot([needed], [trivial], "D", color="#8172B3", zorder=4)
        ax.annotate(
            f"non-vacuous from n = {up(needed, 2)}", (needed, trivial),
            xycoords="data", xytext=(0.03, 0.05), textcoords="axes fraction",
            ha="left", va="bottom", color="#8172B3", fontsize="small",
            arrowprops={"arrowstyle": "->", "color": "#8172B3", "linewidth": 1.0},
        )  # fmt: skip
    else:
        ax.text(
            0.03, 0.05,
            "vacuous at every n:\nsample mean + sampling term\nreach the uniform guess",
            transform=ax.transAxes, ha="left", va="bottom", color="#8172B3", fontsize="small",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(used[0], used[-1])
    ax.set_ylim(0.0, top)
    sampled = _bound(certificate).get("n_tokens") is None
    ax.set_xlabel("tokens n" + (" (its lower bound)" if sampled else "") + ", log scale")
    ax.set_ylabel("bits per token" if headline.kind == "bits" else "error rate")
    ax.set_title("Bound against dataset size")
    _legend_below(ax, 2)


def _plot_terms(ax: Any, found: Sequence[Statement]) -> None:
    positions = list(range(len(found)))[::-1]
    for position, statement in zip(positions, found, strict=True):
        left = 0.0
        for value, color, label in zip(
            (statement.sample_mean, statement.sampling_term, statement.complexity_term),
            _COLORS,
            _TERMS,
            strict=True,
        ):
            share = max(0.0, value / statement.trivial)
            width = max(0.0, min(share, 1.0 - left))
            ax.barh(
                position, width, left=left, color=color, height=0.6,
                label=label if position == positions[0] else None,
            )  # fmt: skip
            left += width
        text = "vacuous" if statement.vacuous else f"≤ {statement.bound_text()}"
        ax.text(
            min(left, 1.0) + 0.02, position, text, va="center", fontsize="small",
            color="#C44E52" if statement.vacuous else "black",
            fontweight="bold" if statement.vacuous else "normal",
        )  # fmt: skip
    ax.axvline(1.0, color="#555555", linestyle="--", linewidth=1.2)
    ax.set_yticks(
        positions,
        [
            (f"bits, α = {s.parameter!r}" if s.kind == "bits" else f"top-{s.parameter} error")
            for s in found
        ],
    )
    ax.set_xlim(0.0, 1.42)
    ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("share of the uniform guess (= 1)")
    ax.set_title("Terms of each statement")
    _legend_below(ax, 2)


def plot_bound(certificate: Mapping[str, Any], path: str | Path) -> Path:
    """PNG: left, the headline bound against n; right, every statement's terms.

    Left: the bound recomputed from the certificate's inputs at every n (statistics
    held fixed, log-scale n), this run's n marked, the uniform-guess line, and the n
    from which the bound is non-vacuous. Right: sample mean, sampling term and
    complexity term stacked per statement as a share of its trivial value, clipped at
    it, vacuous ones labelled. Drawn at twice the Hub's card width; deterministic bytes
    (Agg backend, no timestamp or software metadata); written to a temporary name in
    the same folder, then renamed.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    found = statements(certificate)
    if not found:
        raise InvalidInputError("the certificate has no metric to plot", field="bound.metrics")
    with matplotlib.rc_context({"font.size": 12}):
        figure = Figure(figsize=_FIGURE_INCHES, dpi=_FIGURE_DPI)
        FigureCanvasAgg(figure)
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": (1.15, 1.0)})
        try:
            _plot_against_n(left, certificate, found)
        except CertifyError:
            left.text(0.5, 0.5, "the recorded inputs do not recompute", ha="center")
            left.set_axis_off()
        _plot_terms(right, found)
        figure.tight_layout()
        target = Path(path)
        with atomic_path(target) as temp, open(temp, "wb") as handle:
            figure.savefig(handle, format="png", metadata={"Software": None})
    return target


def card_results(card_text: str) -> list[dict[str, Any]]:
    """The certify-owned model-index results of a card (for tests and ``certify card``)."""
    yaml_text, _ = split_front_matter(card_text)
    data = _load_yaml(yaml_text or "")
    found: list[dict[str, Any]] = []
    for entry in data.get("model-index") or []:
        for result in entry.get("results") or []:
            source = result.get("source") or {}
            if isinstance(source, Mapping) and source.get("name") == RESULT_SOURCE_NAME:
                found.append(result)
    return found


__all__: Sequence[str] = (
    "BEGIN_MARKER",
    "END_MARKER",
    "INSTALL_LINES",
    "VERIFY_SCOPE",
    "SourceRef",
    "Statement",
    "bound_against_n",
    "card_publication",
    "card_results",
    "certificate_sha256",
    "non_vacuous_from",
    "pin_card",
    "pinned_revision",
    "plot_alt_text",
    "plot_bound",
    "relative_folder",
    "render_card",
    "short_name",
    "source_ref",
    "split_front_matter",
    "statements",
    "up",
    "update_card_text",
)
