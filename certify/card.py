"""The model card (README.md) that shows a certificate on the Hub, and its plot.

Metadata goes where the Hub reads it: ``model-index`` results (one per certified
number: the bits-per-token bound, the perplexity bound and each top-k error bound;
``verified`` is never set, because that flag means "evaluated by the Hub itself"),
``base_model``, ``tags`` and a namespaced ``certify`` key with the hashes a reader
needs to check the claim. The human-readable part sits between
:data:`BEGIN_MARKER` and :data:`END_MARKER`.

:func:`update_card_text` edits an existing card in place: only the top-level YAML
keys it owns (``model-index`` results whose ``source.name`` is ``certify``, the
``certify`` key, missing tags, a missing ``base_model``) and the text between the
markers change. Every other YAML key keeps its exact bytes, other model-index
results keep their values, and running it twice gives byte-identical text.

Pure text functions; :func:`plot_bound` writes one PNG (atomically).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from certify._files import atomic_path
from certify._jcs import canonical_bytes
from certify.errors import InvalidInputError

BEGIN_MARKER = "<!-- certify:begin -->"
END_MARKER = "<!-- certify:end -->"
#: ``source.name`` of the model-index results this module owns (and replaces)
RESULT_SOURCE_NAME = "certify"
CARD_TAGS: tuple[str, ...] = ("certify", "generalization-bound", "compressed")
TASK_TYPE = "text-generation"
PAPER_URL = "https://arxiv.org/abs/2407.18158"
PUBLIC_KEY_FILE = "certify-signing-key.pub.pem"
DEFAULT_ENDPOINT = "https://huggingface.co"

_FRONT_MATTER = re.compile(r"\A(\ufeff?---[ \t]*\r?\n)(.*?)(\r?\n---[ \t]*(?:\r?\n|\Z))", re.DOTALL)
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z0-9_][^:#\s]*|\"[^\"]+\"|'[^']+'):(\s|$)")


# --------------------------------------------------------------------------- numbers


def _num(value: Any, digits: int = 4) -> str:
    """A float with ``digits`` significant digits (deterministic text for the card)."""
    if value is None:
        return "—"
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "∞"
    return f"{number:.{digits}g}"


def _confidence(certificate: Mapping[str, Any]) -> str:
    delta = float(_bound(certificate).get("delta", 0.05))
    return f"{100 * (1 - delta):.6g}%"


def _bound(certificate: Mapping[str, Any]) -> Mapping[str, Any]:
    bound = certificate.get("bound")
    if not isinstance(bound, Mapping) or not isinstance(bound.get("metrics"), list):
        raise InvalidInputError(
            "the certificate has no bound.metrics list",
            field="certificate",
            hint="pass a certificate.json written by `certify run`",
        )
    return bound


def certificate_sha256(certificate: Mapping[str, Any]) -> str:
    """sha256 of the certificate's canonical (RFC 8785) bytes, i.e. of certificate.json."""
    return hashlib.sha256(canonical_bytes(dict(certificate))).hexdigest()


# --------------------------------------------------------------------------- metadata


def _dataset_fields(
    certificate: Mapping[str, Any], dataset: Mapping[str, Any] | str | None
) -> dict[str, Any]:
    data = certificate.get("data") or {}
    if isinstance(dataset, str):
        dataset = {"id": dataset}
    dataset = dict(dataset or {})
    identifier = str(dataset.get("id") or data.get("source") or "unknown")
    revision = dataset.get("revision") or data.get("revision")
    return {
        "id": identifier,
        "config": dataset.get("config"),
        "split": dataset.get("split"),
        "revision": str(revision) if revision else None,
    }


def _eval_results(
    certificate: Mapping[str, Any], dataset: dict[str, Any], source_url: str
) -> list[Any]:
    """One EvalResult per certified number (huggingface_hub's own model-index type)."""
    from huggingface_hub import EvalResult

    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    confidence = _confidence(certificate)
    common = {
        "task_type": TASK_TYPE,
        "task_name": "Causal language modeling (certified risk bound)",
        "dataset_type": dataset["id"],
        "dataset_name": dataset["id"],
        "dataset_config": dataset["config"],
        "dataset_split": dataset["split"],
        "dataset_revision": dataset["revision"],
        "source_name": RESULT_SOURCE_NAME,
        "source_url": source_url,
    }
    results = []
    bits = summary.get("bits_per_token_bound")
    if isinstance(bits, int | float):
        results.append(
            EvalResult(
                metric_type="bits_per_token_bound",
                metric_name=f"Bits per token, certified upper bound ({confidence})",
                metric_value=float(bits),
                metric_args={"alpha": summary.get("alpha"), "delta": bound.get("delta")},
                **common,
            )
        )
    perplexity = summary.get("perplexity_bound")
    if isinstance(perplexity, int | float):
        results.append(
            EvalResult(
                metric_type="perplexity_bound",
                metric_name=f"Perplexity, certified upper bound ({confidence})",
                metric_value=float(perplexity),
                metric_args={"alpha": summary.get("alpha"), "delta": bound.get("delta")},
                **common,
            )
        )
    for metric in bound["metrics"]:
        if metric.get("name") == "top_k_error" and metric.get("k") is not None:
            k = int(metric["k"])
            results.append(
                EvalResult(
                    metric_type=f"top_{k}_error_bound",
                    metric_name=f"Top-{k} error, certified upper bound ({confidence})",
                    metric_value=float(metric["bound"]),
                    metric_args={"k": k, "delta": bound.get("delta")},
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
    certificate: Mapping[str, Any], key_fingerprint: str, certificate_sha: str
) -> dict[str, Any]:
    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    artifact = certificate.get("artifact") or {}
    return {
        "certificate": "certificate.json",
        "certificate_sha256": certificate_sha,
        "signature": "certificate.dsse.json",
        "key_fingerprint": key_fingerprint,
        "artifact": str(artifact.get("path") or "model.certz"),
        "artifact_sha256": artifact.get("sha256"),
        "artifact_size_bytes": artifact.get("size_bytes"),
        "certificate_version": certificate.get("certificate_version"),
        "artifact_format_version": artifact.get("format_version"),
        "tool_version": (certificate.get("tool") or {}).get("version"),
        "delta": bound.get("delta"),
        "bits_per_token_bound": summary.get("bits_per_token_bound"),
        "perplexity_bound": summary.get("perplexity_bound"),
        "alpha": summary.get("alpha"),
        "top_k_error_bounds": {
            str(item.get("k")): item.get("bound") for item in summary.get("top_k") or []
        },
    }


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
) -> list[dict[str, Any]]:
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
        return entries if entries else existing  # type: ignore[no-any-return]
    if entries:
        first = entries[0]
        first["results"] = list(first.get("results") or []) + ours
    else:
        entries = [{"name": model_name, "results": ours}]
    return entries


# --------------------------------------------------------------------------- body


def _table(certificate: Mapping[str, Any]) -> str:
    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    rows = [
        "| statement | empirical risk | complexity term | sampling term | bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for metric in bound["metrics"]:
        if metric.get("name") == "bits":
            label = f"bits per token, α = {_num(metric.get('alpha'))}"
            if metric.get("alpha") == summary.get("alpha"):
                label = f"**{label}** (headline)"
        else:
            label = f"top-{metric.get('k')} error rate"
        rows.append(
            f"| {label} | {_num(metric.get('sample_mean'))} | "
            f"{_num(metric.get('complexity_term'))} | {_num(metric.get('sampling_term'))} | "
            f"{_num(metric.get('bound'))} |"
        )
    return "\n".join(rows)


def _section(
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    certificate_sha: str,
    dataset: dict[str, Any],
    repo_id: str | None,
    plot_filename: str | None,
) -> str:
    bound = _bound(certificate)
    summary = bound.get("summary") or {}
    artifact = certificate.get("artifact") or {}
    prior = bound.get("prior") or {}
    statement = str(certificate.get("statement") or "").strip()
    if not statement:
        statement = (
            f"With probability at least {_confidence(certificate)}, the conditional token-level "
            f"risk of {artifact.get('path', 'model.certz')} is at most "
            f"{_num(summary.get('bits_per_token_bound'))} bits per token."
        )
    repo = repo_id or "NAMESPACE/NAME"
    where = dataset["id"] + (f" (config {dataset['config']})" if dataset.get("config") else "")
    if dataset.get("split"):
        where += f", split {dataset['split']}"
    if dataset.get("revision"):
        where += f", revision {str(dataset['revision'])[:12]}"
    lines = [
        BEGIN_MARKER,
        "## Certified generalization bound",
        "",
        f"**Claim.** {statement}",
        "",
        f"- Bits-per-token bound: **{_num(summary.get('bits_per_token_bound'))}** "
        f"(empirical {_num(summary.get('empirical_bits_per_token'))}; "
        f"a uniform guess scores {_num(summary.get('uniform_bits_per_token'))})",
        f"- Perplexity bound: **{_num(summary.get('perplexity_bound'))}**",
        f"- Confidence: {_confidence(certificate)} for all {bound.get('statements')} statements "
        f"together (δ = {_num(bound.get('delta'))}, {bound.get('sampling_method')} sampling term)",
        f"- Data: {where}; {bound.get('n_tokens')} tokens",
        f"- Artifact: `{artifact.get('path', 'model.certz')}`, "
        f"{artifact.get('size_bytes')} bytes ({_num(artifact.get('bits_per_parameter'))} bits "
        f"per parameter), sha256 `{artifact.get('sha256')}`; prior "
        f"{_num(prior.get('nats'), 8)} nats",
        "",
        _table(certificate),
        "",
        "Each bound = empirical risk + sampling term + complexity term "
        f"(token-level martingale bound, Lotfi et al. 2024, {PAPER_URL}).",
        "",
        "### Assumptions",
        "",
    ]
    assumptions = certificate.get("assumptions") or []
    lines.extend(f"- {str(item).strip()}" for item in assumptions)
    if not assumptions:
        lines.append("- None recorded beyond the statement above.")
    lines += [
        "",
        "### How to verify",
        "",
        "The certificate is signed; check the key fingerprint against one the publisher "
        "gave you through another channel, then let certify recompute every number:",
        "",
        "```bash",
        "pip install certify",
        f"certify verify {repo} --key {PUBLIC_KEY_FILE}",
        "```",
        "",
        f"- certificate.json sha256: `{certificate_sha}`",
        f"- signing key fingerprint: `{key_fingerprint}`",
    ]
    if plot_filename:
        lines += [
            "",
            f"![Bound against the smoothing α, with its terms stacked]({plot_filename})",
        ]
    lines.append(END_MARKER)
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


# --------------------------------------------------------------------------- public


def update_card_text(
    existing_text: str,
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    base_model: str | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    repo_id: str | None = None,
    endpoint: str | None = None,
    certificate_sha256_hex: str | None = None,
    plot_filename: str | None = "bound.png",
) -> str:
    """Attach or refresh the certified bounds on ``existing_text``; idempotent.

    Only the ``certify``-owned parts change (see the module docstring); other YAML
    keys keep their bytes and the body outside the markers is untouched.
    ``certificate_sha256_hex`` is the sha256 of certificate.json's bytes (computed
    from the canonical form when omitted).
    """
    from huggingface_hub import ModelCard

    certificate_sha = certificate_sha256_hex or certificate_sha256(certificate)
    dataset_fields = _dataset_fields(certificate, dataset)
    source_url = (
        f"{(endpoint or DEFAULT_ENDPOINT).rstrip('/')}/{repo_id}/blob/main/certificate.json"
        if repo_id
        else PAPER_URL
    )
    yaml_text, body = split_front_matter(existing_text)
    yaml_text = yaml_text or ""
    current = _load_yaml(yaml_text)
    model_name = str(repo_id or (certificate.get("model") or {}).get("source") or "model").split(
        "/"
    )[-1]
    ours = _model_index_results(certificate, dataset_fields, source_url, model_name)

    wanted: dict[str, Any] = {}
    tags = current.get("tags")
    tag_list = [tags] if isinstance(tags, str) else list(tags or [])
    missing_tags = [tag for tag in CARD_TAGS if tag not in tag_list]
    if missing_tags:
        wanted["tags"] = tag_list + missing_tags
    if base_model and not current.get("base_model"):
        wanted["base_model"] = base_model
    model_index = _merge_model_index(current.get("model-index"), ours, model_name)
    if model_index != current.get("model-index"):
        wanted["model-index"] = model_index
    certify_key = _certify_key(certificate, key_fingerprint, certificate_sha)
    if certify_key != current.get("certify"):
        wanted["certify"] = certify_key

    blocks = _blocks(yaml_text)
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
    if ours and not any(
        getattr(result, "source_name", None) == RESULT_SOURCE_NAME
        for result in getattr(card.data, "eval_results", None) or []
    ):
        raise InvalidInputError("the updated card lost its certified results", field="README.md")
    return text


def render_card(
    certificate: Mapping[str, Any],
    *,
    key_fingerprint: str,
    base_model: str | None,
    dataset: Mapping[str, Any] | str | None,
    existing: str | None = None,
    plot_filename: str | None = "bound.png",
    repo_id: str | None = None,
    endpoint: str | None = None,
    certificate_sha256_hex: str | None = None,
) -> str:
    """README.md text for a published run (a new card, or ``existing`` updated).

    ``dataset`` is ``{id, config, split, revision}`` (or just the id); missing fields
    come from the certificate's ``data``. ``repo_id`` goes into the copy-paste verify
    command (a placeholder when unknown).
    """
    if existing is None:
        source = (certificate.get("model") or {}).get("source") or "model"
        title = repo_id.split("/")[-1] if repo_id else f"{Path(str(source)).name} (certified)"
        existing = (
            f"# {title}\n\n"
            f"A compressed copy of `{source}` in one file, `model.certz`, with a signed "
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
        endpoint=endpoint,
        certificate_sha256_hex=certificate_sha256_hex,
        plot_filename=plot_filename,
    )


def plot_bound(certificate: Mapping[str, Any], path: str | Path) -> Path:
    """PNG of the bits bound against α with its terms stacked; top-k in a second panel.

    Deterministic bytes (Agg backend, no timestamp or version metadata); written to a
    temporary name in the same folder, then renamed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bound = _bound(certificate)
    bits = sorted(
        (m for m in bound["metrics"] if m.get("name") == "bits"), key=lambda m: float(m["alpha"])
    )
    top_k = sorted(
        (m for m in bound["metrics"] if m.get("name") == "top_k_error"), key=lambda m: int(m["k"])
    )
    panels = (1 if bits else 0) + (1 if top_k else 0)
    if panels == 0:
        raise InvalidInputError("the certificate has no metric to plot", field="bound.metrics")
    figure = Figure(figsize=(6.0 * panels, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    colors = ("#4C72B0", "#DD8452", "#55A868")
    labels = ("empirical risk", "sampling term", "complexity term")
    panel = 0
    if bits:
        ax = axes[panel]
        panel += 1
        alphas = [float(m["alpha"]) for m in bits]
        layers = [
            [float(m["sample_mean"]) for m in bits],
            [float(m["sampling_term"]) for m in bits],
            [float(m["complexity_term"]) for m in bits],
        ]
        if len(alphas) > 1:
            ax.stackplot(alphas, layers, labels=labels, colors=colors, alpha=0.85)
            ax.set_xscale("log")
        else:
            bottom = 0.0
            for layer, label, color in zip(layers, labels, colors, strict=True):
                ax.bar([0], layer, bottom=bottom, label=label, color=color, width=0.5)
                bottom += layer[0]
            ax.set_xticks([0], [f"α = {_num(alphas[0])}"])
        totals = [float(m["bound"]) for m in bits]
        if len(alphas) > 1:
            ax.plot(alphas, totals, color="black", linewidth=1.2, label="bound")
        uniform = (bound.get("summary") or {}).get("uniform_bits_per_token")
        if isinstance(uniform, int | float):
            ax.axhline(
                float(uniform), color="gray", linestyle="--", linewidth=1, label="uniform guess"
            )
        ax.set_xlabel("smoothing α")
        ax.set_ylabel("bits per token")
        ax.set_title("Bits-per-token bound")
        ax.legend(loc="best", fontsize=8)
    if top_k:
        ax = axes[panel]
        positions = list(range(len(top_k)))
        bottom_values = [0.0] * len(top_k)
        for key, label, color in zip(
            ("sample_mean", "sampling_term", "complexity_term"), labels, colors, strict=True
        ):
            values = [float(m[key]) for m in top_k]
            ax.bar(positions, values, bottom=bottom_values, label=label, color=color, width=0.6)
            bottom_values = [b + v for b, v in zip(bottom_values, values, strict=True)]
        ax.set_xticks(positions, [f"top-{int(m['k'])}" for m in top_k])
        ax.set_ylabel("error rate")
        ax.set_title("Top-k error bounds")
        ax.legend(loc="best", fontsize=8)
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
    "card_results",
    "certificate_sha256",
    "plot_bound",
    "render_card",
    "split_front_matter",
    "update_card_text",
)
