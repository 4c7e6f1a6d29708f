"""Model cards: metadata the Hub reads, honest numbers, edits that leave the rest alone, the plot.

Certificates (tests/fixtures/card/, made by make_certificates.py): ``certificate.json``
(version 1), ``certificate.v2.hub.json`` (Hub model and dataset, exact n, top-1
vacuous), ``certificate.v2.local.json`` (local paths, sampled mode, held-out) and
``certificate.v2.vacuous.json`` (the demo's situation: every statement vacuous).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from huggingface_hub.utils import validate_repo_id

from certify import card as card_module
from certify.bound import compute_bound, confidence_text
from certify.card import (
    BEGIN_MARKER,
    END_MARKER,
    VERIFY_SCOPE,
    bound_against_n,
    card_results,
    non_vacuous_from,
    pin_card,
    plot_alt_text,
    plot_bound,
    relative_folder,
    render_card,
    split_front_matter,
    statements,
    up,
    update_card_text,
)
from certify.certificate import bound_input_of, published_number
from certify.cli import run_cli
from certify.errors import InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "card"
ROOT = Path(__file__).resolve().parent.parent
#: set CERTIFY_REGENERATE_GOLDEN=1 to rewrite the golden cards after a deliberate change
REGENERATE = os.environ.get("CERTIFY_REGENERATE_GOLDEN") == "1"
FINGERPRINT = "ab" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATASET = {
    "id": "HuggingFaceTB/smollm-corpus",
    "config": "cosmopedia-v2",
    "split": "train",
    "revision": "3ba9d605774198c5868892d7a8deda78031a781f",
}
CERTIFICATES = ("certificate.json", "certificate.v2.hub.json", "certificate.v2.local.json",
                "certificate.v2.vacuous.json")  # fmt: skip
#: absolute paths of a POSIX or Windows file system, as they would leak into a card
ABSOLUTE_PATH = re.compile(
    r"(?:^|[\s`'\"(=:])(?:/(?:home|Users|tmp|root|var|private|mnt|opt|srv|work|data)\b|[A-Za-z]:\\)"
)


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def certificate() -> dict[str, Any]:
    return _load("certificate.json")


@pytest.fixture
def hub_certificate() -> dict[str, Any]:
    return _load("certificate.v2.hub.json")


@pytest.fixture
def local_certificate() -> dict[str, Any]:
    return _load("certificate.v2.local.json")


@pytest.fixture
def vacuous_certificate() -> dict[str, Any]:
    return _load("certificate.v2.vacuous.json")


@pytest.fixture
def existing() -> str:
    return (FIXTURES / "existing.md").read_text(encoding="utf-8")


def _update(text: str, certificate: dict[str, Any], **extra: Any) -> str:
    return update_card_text(
        text,
        certificate,
        key_fingerprint=FINGERPRINT,
        base_model="HuggingFaceTB/SmolLM2-135M",
        dataset=DATASET,
        **extra,
    )


def _golden(name: str, text: str) -> str:
    path = FIXTURES / name
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    return path.read_text(encoding="utf-8")


def _metadata(text: str) -> dict[str, Any]:
    return yaml.safe_load(split_front_matter(text)[0] or "")  # type: ignore[no-any-return]


def _section(text: str) -> str:
    body = split_front_matter(text)[1]
    return body[body.index(BEGIN_MARKER) : body.index(END_MARKER)]


def _words(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- golden cards


def test_v1_new_card_matches_golden_file(certificate: dict[str, Any]) -> None:
    """Version-1 certificates still render, with their own (version-1) numbers."""
    text = render_card(
        certificate,
        key_fingerprint=FINGERPRINT,
        dataset=DATASET,
        repo_id="someone/smol-certified",
        revision=COMMIT,
    )
    assert text == _golden("README.md", text)
    assert "certified by" not in text  # version 1 has one form: no form column
    assert up(certificate["bound"]["summary"]["bits_per_token_bound"]) in _section(text)


def test_v1_updated_card_matches_golden_file(certificate: dict[str, Any], existing: str) -> None:
    text = _update(existing, certificate)
    assert text == _golden("existing.updated.md", text)


def test_hub_source_card_matches_golden_file(hub_certificate: dict[str, Any]) -> None:
    text = render_card(
        hub_certificate,
        key_fingerprint=FINGERPRINT,
        repo_id="someone/smol-certified",
        revision=COMMIT,
    )
    assert text == _golden("README.hub.md", text)


def test_local_source_card_matches_golden_file(local_certificate: dict[str, Any]) -> None:
    text = render_card(local_certificate, key_fingerprint=FINGERPRINT, run_folder="runs/smol")
    assert text == _golden("README.local.md", text)


def test_fixture_certificates_are_valid_and_recompute() -> None:
    from certify.certificate import recompute_bound, validate_certificate

    for name in CERTIFICATES:
        certificate = _load(name)
        validate_certificate(certificate)
        recomputed = recompute_bound(certificate)  # type: ignore[arg-type]
        for metric, again in zip(certificate["bound"]["metrics"], recomputed.metrics, strict=True):
            assert math.isclose(metric["bound"], again.bound, rel_tol=1e-12)


# --------------------------------------------------------------------------- metadata


def test_metadata_passes_huggingface_hubs_own_validation(hub_certificate: dict[str, Any]) -> None:
    text = render_card(
        hub_certificate, key_fingerprint=FINGERPRINT, repo_id="alice/smol", revision=COMMIT
    )
    card = ModelCard(text, ignore_metadata_errors=False)  # raises on an invalid model-index
    data = card.data.to_dict()
    ModelCardData(ignore_metadata_errors=False, **data)
    # base_model: a Hub id (validated by huggingface_hub), with the relation the Hub knows
    validate_repo_id(card.data.base_model)
    assert card.data.base_model == hub_certificate["model"]["source"]
    assert data["base_model_relation"] == "quantized"
    assert data["certify"]["model"] == {
        "id": hub_certificate["model"]["source"],
        "revision": hub_certificate["model"]["revision"],
    }
    assert data["certify"]["dataset"]["id"] == hub_certificate["data"]["source"]
    # model-index round-trips through huggingface_hub's own converters unchanged
    name, results = model_index_to_eval_results(data["model-index"])
    assert eval_results_to_model_index(name, results) == data["model-index"]
    for result in results:
        assert result.task_type == "text-generation"
        assert result.dataset_type == hub_certificate["data"]["source"]
        assert result.dataset_revision == hub_certificate["data"]["revision"]
        assert result.verified is None  # "verified" means evaluated by the Hub: never claimed
        assert result.source_url.endswith(f"/alice/smol/blob/{COMMIT}/certificate.json")
    assert "verified" not in text
    assert {"certify", "generalization-bound", "compressed"} <= set(card.data.tags)


def test_metric_values_are_the_certificates_bounds_rounded_up(
    hub_certificate: dict[str, Any],
) -> None:
    text = render_card(hub_certificate, key_fingerprint=FINGERPRINT)
    values = {r.metric_type: r.metric_value for r in ModelCard(text).data.eval_results}
    summary = hub_certificate["bound"]["summary"]
    expected = {
        "bits_per_token_bound": summary["bits_per_token_bound"],
        "perplexity_bound": summary["perplexity_bound"],
        "top_10_error_bound": summary["top_k"][1]["bound"],
    }
    assert values == {key: float(published_number(value)) for key, value in expected.items()}
    for key, value in expected.items():
        assert values[key] >= value  # never below the certified number


def test_metric_names_and_args_say_alpha_delta_and_heldout(
    hub_certificate: dict[str, Any], local_certificate: dict[str, Any]
) -> None:
    for certificate, heldout in ((hub_certificate, False), (local_certificate, True)):
        text = render_card(certificate, key_fingerprint=FINGERPRINT)
        results = ModelCard(text).data.eval_results
        assert results
        alpha = certificate["bound"]["summary"]["alpha"]
        for result in results:
            assert "δ = 0.05" in result.metric_name and "95% confidence" in result.metric_name
            assert result.metric_args["delta"] == 0.05
            assert ("held-out mode" in result.metric_name) is heldout
            assert result.metric_args.get("heldout", False) is heldout
            if result.metric_type in ("bits_per_token_bound", "perplexity_bound"):
                assert f"α = {alpha!r}" in result.metric_name
                assert result.metric_args["alpha"] == alpha
            else:
                assert result.metric_args["k"] == int(result.metric_type.split("_")[1])


def test_confidence_is_printed_exactly(hub_certificate: dict[str, Any]) -> None:
    tiny = copy.deepcopy(hub_certificate)
    tiny["bound"]["delta"] = 1e-7
    text = render_card(tiny, key_fingerprint=FINGERPRINT)
    assert confidence_text(1e-7) == "99.99999%"
    assert "99.99999% confidence, δ = 1e-07" in text
    assert "100%" not in text
    assert _metadata(text)["certify"]["confidence"] == "99.99999%"


def test_model_index_carries_no_vacuous_value() -> None:
    for name in CERTIFICATES:
        certificate = _load(name)
        text = render_card(certificate, key_fingerprint=FINGERPRINT)
        vocab = certificate["bound"]["vocab_size"]
        found = statements(certificate)
        for result in card_results(text):
            for metric in result["metrics"]:
                kind, value = metric["type"], metric["value"]
                if kind == "bits_per_token_bound":
                    assert value < math.log2(vocab), name
                elif kind == "perplexity_bound":
                    assert value < vocab, name
                else:
                    k = int(kind.split("_")[1])
                    assert value < 1 - k / vocab, name
        published = {m["type"] for r in card_results(text) for m in r["metrics"]}
        section = _section(text)
        for statement in found:
            if statement.vacuous:  # listed in the human section, marked, with the trivial value
                row = next(
                    line
                    for line in section.splitlines()
                    if line.startswith("| ") and statement.label in line
                )
                assert "**vacuous**" in row and statement.trivial_text() in row, name
                if statement.kind == "top_k_error":
                    assert f"top_{statement.parameter}_error_bound" not in published
    vacuous = _load("certificate.v2.vacuous.json")
    text = render_card(vacuous, key_fingerprint=FINGERPRINT)
    assert "model-index" not in _metadata(text)  # nothing non-vacuous: no results at all
    assert card_results(text) == []
    assert "15.59" in _section(text) and "vacuous" in _section(text)


def test_a_vacuous_certificate_removes_only_our_old_results(
    hub_certificate: dict[str, Any], vacuous_certificate: dict[str, Any], existing: str
) -> None:
    once = _update(existing, hub_certificate)
    assert card_results(once)
    twice = _update(once, vacuous_certificate)
    assert card_results(twice) == []
    after = _metadata(twice)
    assert after["model-index"][0]["results"][0]["metrics"][0]["value"] == 42.1  # theirs stays
    fresh = render_card(hub_certificate, key_fingerprint=FINGERPRINT)
    assert "model-index" not in _metadata(update_card_text(
        fresh, vacuous_certificate, key_fingerprint=FINGERPRINT
    ))  # fmt: skip


# --------------------------------------------------------------------------- no local paths


def _relocated(name: str, home: Path) -> dict[str, Any]:
    """A fixture certificate whose local sources live under ``home`` (a real absolute path)."""
    raw = (FIXTURES / name).read_text().replace("/home/alice", str(home).replace("\\", "/"))
    return json.loads(raw)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["certificate.v2.local.json", "certificate.v2.vacuous.json"])
def test_local_sources_never_leak_a_path(name: str, tmp_path: Path) -> None:
    certificate = _relocated(name, tmp_path / "home" / "alice")
    model_source = certificate["model"]["source"]
    assert model_source.startswith(str(tmp_path))
    texts = [
        render_card(certificate, key_fingerprint=FINGERPRINT),
        render_card(certificate, key_fingerprint=FINGERPRINT, run_folder=str(tmp_path / "run")),
        render_card(certificate, key_fingerprint=FINGERPRINT, repo_id="alice/smol"),
        render_card(
            certificate, key_fingerprint=FINGERPRINT, base_model=model_source, dataset=model_source
        ),
    ]
    for number, text in enumerate(texts):
        assert str(tmp_path) not in text
        assert ABSOLUTE_PATH.search(text) is None, ABSOLUTE_PATH.search(text)
        first_lines = split_front_matter(text)[1].splitlines()[:3]
        assert first_lines[0].startswith("# ") and "/" not in first_lines[0]  # the title
        assert "A compressed copy of the local model `" in first_lines[2]
        data = _metadata(text)
        assert "base_model" not in data  # a local model has no Hub base model
        assert data["certify"]["model"]["name"] == Path(model_source).name
        assert re.fullmatch(r"[0-9a-f]{64}", data["certify"]["model"]["sha256"])
        dataset = data["certify"]["dataset"]
        named = model_source if number == 3 else certificate["data"]["source"]
        assert dataset["name"] == Path(named).name
        assert "sha256" in dataset or dataset["fingerprint"].startswith("units:")
        for result in card_results(text):
            assert "/" not in result["dataset"]["type"]


def test_the_cli_card_of_an_absolute_folder_has_no_absolute_path(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "alice" / "runs" / "smol"
    folder.mkdir(parents=True)
    certificate = _relocated("certificate.v2.local.json", tmp_path / "home" / "alice")
    (folder / "certificate.json").write_text(json.dumps(certificate), encoding="utf-8")
    key = _public_key(tmp_path)[0]
    argv = ["card", str(folder), "-c", str(folder / "certificate.json"), "--key", str(key)]
    assert run_cli([*argv, "--json"]) == 0
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in text and ABSOLUTE_PATH.search(text) is None
    assert "certify verify smol --key smol/certify-signing-key.pub.pem" in text


def test_an_older_cards_local_base_model_is_removed(local_certificate: dict[str, Any]) -> None:
    source = local_certificate["model"]["source"]
    old = f"---\nbase_model: {source}\nlicense: mit\n---\n# Old\n"
    text = update_card_text(old, local_certificate, key_fingerprint=FINGERPRINT)
    assert source not in text
    assert "base_model" not in _metadata(text) and "license: mit\n" in text


def test_base_model_refuses_a_path_and_never_names_its_own_repo(
    hub_certificate: dict[str, Any],
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        render_card(hub_certificate, key_fingerprint=FINGERPRINT, base_model="./models/smol")
    assert "Hub model id" in str(caught.value)
    own = hub_certificate["model"]["source"]
    text = render_card(hub_certificate, key_fingerprint=FINGERPRINT, repo_id=own)
    assert "base_model" not in _metadata(text)


# --------------------------------------------------------------------------- numbers


def test_rounding_up_at_the_boundaries() -> None:
    assert up(2.00000000001) == "2.001"
    assert up(2.0) == "2.000" and up(0.5) == "0.5000" and up(1.25) == "1.250"  # exact: unchanged
    assert up(1.0009999999) == "1.001"
    assert up(1.001) == "1.001"  # the double nearest 1.001 lies just below it
    assert up(9.99951) == "10.00" and up(9.9996) == "10.00"  # one more digit before the point
    assert up(1e6) == "1.000e+06" and up(2.0**600) == "4.150e+180"
    assert up(4.2589999e183) == "4.259e+183"
    for value in (0.1, 3.1, 9.853, 1.0982, 11.373, 2.0**-20, 12345.678, 4.2589999e183):
        assert float(up(value)) >= value


def test_this_runs_n_is_never_overstated(hub_certificate: dict[str, Any]) -> None:
    """A count the run has is rounded down; the count a non-vacuous bound needs, up."""
    more = copy.deepcopy(hub_certificate)
    more["bound"]["n_tokens"] = more["data"]["n_tokens"] = 2_999_999_999
    text = render_card(more, key_fingerprint=FINGERPRINT)
    assert "this run has n = 2.9e+09 tokens" in text
    needed = non_vacuous_from(more)
    assert needed is not None and f"from n ≥ {up(needed, 2)} tokens on" in text
    assert float(up(needed, 2)) >= needed


def test_published_numbers_in_the_card_are_rounded_up(hub_certificate: dict[str, Any]) -> None:
    edge = copy.deepcopy(hub_certificate)
    headline = next(m for m in edge["bound"]["metrics"] if m.get("alpha") == 0.1)
    headline["bound"] = 2.00000000001
    edge["bound"]["summary"]["bits_per_token_bound"] = 2.00000000001
    text = render_card(edge, key_fingerprint=FINGERPRINT)
    values = {r.metric_type: r.metric_value for r in ModelCard(text).data.eval_results}
    assert values["bits_per_token_bound"] == 2.001
    assert "| **bits per token, α = 0.1** (headline) | 2.001 |" in text
    assert "≤ **2.001**" in text


def test_large_values_use_scientific_notation(vacuous_certificate: dict[str, Any]) -> None:
    text = render_card(vacuous_certificate, key_fingerprint=FINGERPRINT)
    perplexity = vacuous_certificate["bound"]["summary"]["perplexity_bound"]
    assert perplexity > 1e100
    assert "perplexity at most 3.545e+122" in text  # the signed sentence's own rounding
    assert _metadata(text)["certify"]["perplexity_bound"] == float(up(perplexity))
    plain = re.sub(r"[0-9a-f]{40,64}", "", text).replace(",", "")  # hashes aside
    assert not re.search(r"\d{12,}", plain)  # no 100-digit integers anywhere


# --------------------------------------------------------------------------- version 2 details


def test_v2_card_names_the_certifying_form_and_sampled_n(
    hub_certificate: dict[str, Any], local_certificate: dict[str, Any]
) -> None:
    hub = _section(render_card(hub_certificate, key_fingerprint=FINGERPRINT))
    assert "| certified by |" in hub
    assert "empirical Freedman, λ = 2^(−1/4)" in hub and "| Azuma |" in hub
    assert "n = 2,000,000,000 tokens (exact count)" in hub
    local = _section(render_card(local_certificate, key_fingerprint=FINGERPRINT))
    n_lo = local_certificate["data"]["sampled"]["n_lower_bound"]
    assert f"n ≥ **{n_lo:,}** tokens" in local
    assert "1,000 accepted of 1,100 drawn units" in local and "δ_n = 0.005" in local
    assert "**Held-out mode**" in local


def test_how_much_data_is_recomputed_from_the_certificate() -> None:
    for name in ("certificate.json", "certificate.v2.hub.json", "certificate.v2.local.json"):
        certificate = _load(name)
        found = statements(certificate)
        headline = next(s for s in found if s.headline)
        index = found.index(headline)
        needed = non_vacuous_from(certificate)
        assert needed is not None
        # at this run's n the curve is the certificate's own number
        recorded = certificate["bound"]["n_tokens"] or certificate["bound"]["n_lower_bound"]
        used, curves = bound_against_n(certificate, [recorded])
        assert used == [recorded]
        assert math.isclose(curves[index][0], headline.bound, rel_tol=1e-12)
        # and one token fewer is not enough: the bound recomputed at needed and needed - 1
        _, curves = bound_against_n(certificate, [needed - 1, needed])
        assert curves[index][1] < headline.trivial <= curves[index][0]
        if certificate["bound"]["n_tokens"] is not None:  # straight from compute_bound too
            inputs = bound_input_of(certificate)  # type: ignore[arg-type]
            at = compute_bound(dataclasses.replace(inputs, n_tokens=needed))
            assert at.metrics[index].bound == curves[index][1]
    vacuous = _load("certificate.v2.vacuous.json")
    assert non_vacuous_from(vacuous) is None  # 16 samples: the sampling term alone is vacuous
    assert "stays vacuous at every n" in render_card(vacuous, key_fingerprint=FINGERPRINT)


# --------------------------------------------------------------------------- verify instructions


def test_verify_instructions_after_a_push_pin_the_repo_and_commit(
    hub_certificate: dict[str, Any],
) -> None:
    text = render_card(
        hub_certificate, key_fingerprint=FINGERPRINT, repo_id="alice/smol", revision=COMMIT
    )
    section = _section(text)
    key = "smol/certify-signing-key.pub.pem"
    assert f"certify verify alice/smol --revision {COMMIT} --key {key}" in section
    assert f"hf download alice/smol --revision {COMMIT} --local-dir smol" in section
    assert f"model_signing verify key --signature smol/model.sig --public_key {key} smol" in section
    assert "pip install certify" not in text
    assert "make install" in section  # README.md: `make install` in a checkout
    assert _metadata(text)["certify"]["published"] == {"repo_id": "alice/smol", "revision": COMMIT}
    with pytest.raises(InvalidInputError):
        render_card(hub_certificate, key_fingerprint=FINGERPRINT, repo_id="a/b", revision="main")


def test_verify_instructions_before_a_push_name_the_folder_relative(
    local_certificate: dict[str, Any],
) -> None:
    for given, shown in (("runs/smol", "runs/smol"), ("./runs/smol/", "runs/smol"),
                         ("/srv/alice/runs/smol", "smol"), ("../elsewhere/smol", "smol"),
                         (None, "RUN_FOLDER")):  # fmt: skip
        assert relative_folder(given) == (None if given is None else shown)
        section = _section(
            render_card(local_certificate, key_fingerprint=FINGERPRINT, run_folder=given)
        )
        assert f"certify verify {shown} --key {shown}/certify-signing-key.pub.pem" in section
        assert f"--signature {shown}/model.sig" in section


def test_what_verify_establishes_is_said_the_same_in_card_readme_and_help(
    hub_certificate: dict[str, Any],
) -> None:
    scope = _words(VERIFY_SCOPE)
    assert "integrity and arithmetic" in scope and "signer's claims" in scope
    assert "--recompute-risk" in scope
    assert scope in _words(render_card(hub_certificate, key_fingerprint=FINGERPRINT))
    assert scope in _words((ROOT / "README.md").read_text(encoding="utf-8"))
    done = subprocess.run(
        [sys.executable, "-m", "certify", "verify", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert scope in _words(done.stdout.replace("│", " "))


def test_readme_shows_the_official_model_signing_check() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(
        r"model_signing verify key --signature (\S+)/model\.sig --public_key \S+\.pub\.pem \1\n",
        readme,
    )
    assert "pip install certify\n" not in readme


# --------------------------------------------------------------------------- pinning


def test_pin_card_pins_only_the_verify_instructions(local_certificate: dict[str, Any]) -> None:
    before = render_card(local_certificate, key_fingerprint=FINGERPRINT, run_folder="runs/smol")
    pinned = pin_card(before, local_certificate, repo_id="alice/smol", revision=COMMIT)
    assert pinned is not None
    assert f"certify verify alice/smol --revision {COMMIT}" in pinned
    assert "certify verify runs/smol" not in pinned
    assert _metadata(pinned)["certify"]["published"]["revision"] == COMMIT
    old, new = _metadata(before), _metadata(pinned)
    assert old["certify"]["dataset"] == new["certify"]["dataset"]
    assert old["certify"]["key_fingerprint"] == new["certify"]["key_fingerprint"]
    assert pin_card(pinned, local_certificate, repo_id="alice/smol", revision=COMMIT) == pinned
    # `certify card` again, without a repo: the card keeps where it was published
    again = update_card_text(pinned, local_certificate, key_fingerprint=FINGERPRINT)
    assert again == pinned
    other = copy.deepcopy(local_certificate)
    other["created_at"] = "2027-01-01T00:00:00Z"  # another certificate: not this card's
    assert pin_card(pinned, other, repo_id="alice/smol", revision=COMMIT) is None
    assert pin_card("# not a certify card\n", local_certificate, repo_id="a/b", revision=COMMIT) \
        is None  # fmt: skip


# --------------------------------------------------------------------------- editing rules


def test_update_keeps_other_metadata_and_body_byte_for_byte(
    hub_certificate: dict[str, Any], existing: str
) -> None:
    updated = _update(existing, hub_certificate)
    old_yaml, old_body = split_front_matter(existing)
    new_yaml, new_body = split_front_matter(updated)
    assert old_yaml is not None and new_yaml is not None
    # every top-level key we do not own keeps its exact lines (comment included)
    for block in (
        "language:\n- en\n",
        "license: apache-2.0\n",
        "library_name: transformers\n# a comment the owner wrote; it must survive\n",
        "datasets:\n  - HuggingFaceTB/smollm-corpus\n",
        'widget:\n  - text: "Once upon a time"\n',
        "pipeline_tag: text-generation",
    ):
        assert block in old_yaml and block in new_yaml
    assert new_body.startswith(old_body)  # the owner's text is untouched; ours follows
    before, after = yaml.safe_load(old_yaml), yaml.safe_load(new_yaml)
    assert after["model-index"][0]["results"][0] == before["model-index"][0]["results"][0]
    assert after["model-index"][0]["name"] == before["model-index"][0]["name"]
    for key in ("language", "license", "library_name", "datasets", "widget", "pipeline_tag"):
        assert after[key] == before[key]
    assert after["tags"][:2] == ["text-generation", "smol"]
    assert len(card_results(updated)) == 1


@pytest.mark.parametrize("name", CERTIFICATES)
def test_running_twice_changes_nothing(name: str, existing: str) -> None:
    certificate = _load(name)
    once = _update(existing, certificate)
    assert _update(once, certificate) == once
    new = render_card(certificate, key_fingerprint=FINGERPRINT, run_folder="runs/x")
    assert update_card_text(new, certificate, key_fingerprint=FINGERPRINT, run_folder="runs/x") \
        == new  # fmt: skip


def test_a_new_certificate_replaces_ours_only(
    hub_certificate: dict[str, Any], certificate: dict[str, Any], existing: str
) -> None:
    once = _update(existing, certificate)
    twice = _update(once, hub_certificate)
    results = card_results(twice)
    assert len(results) == 1  # replaced, not duplicated
    values = {m["type"]: m["value"] for m in results[0]["metrics"]}
    assert values["bits_per_token_bound"] == float(
        up(hub_certificate["bound"]["summary"]["bits_per_token_bound"])
    )
    assert "top_1_error_bound" not in values  # vacuous in the new certificate
    after = _metadata(twice)
    assert after["model-index"][0]["results"][0]["metrics"][0]["value"] == 42.1
    assert twice.count(BEGIN_MARKER) == 1 and twice.count(END_MARKER) == 1
    assert split_front_matter(twice)[1].startswith(split_front_matter(existing)[1])


def test_card_without_front_matter_gets_one(hub_certificate: dict[str, Any]) -> None:
    text = _update("# My model\n\nHello.\n", hub_certificate)
    assert text.startswith("---\n")
    assert split_front_matter(text)[1].startswith("# My model\n\nHello.\n")


def test_broken_yaml_is_a_one_line_input_error(hub_certificate: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        _update("---\ntags: [unclosed\n---\nbody\n", hub_certificate)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the plot


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        offset += 12 + length
    return chunks


@pytest.mark.parametrize("name", CERTIFICATES)
def test_plot_is_produced_for_vacuous_and_non_vacuous_certificates(
    name: str, tmp_path: Path
) -> None:
    certificate = _load(name)
    first = plot_bound(certificate, tmp_path / "a.png")
    second = plot_bound(certificate, tmp_path / "b.png")
    data = first.read_bytes()
    assert data == second.read_bytes()  # deterministic bytes
    chunks = _png_chunks(data)
    kinds = [kind for kind, _ in chunks]
    assert b"tIME" not in kinds  # no timestamp
    assert all(b"Software" not in body for kind, body in chunks if kind in (b"tEXt", b"iTXt"))
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width >= 1600 and 0.4 < height / width < 0.7  # twice the Hub's ~800 px card width
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # nothing left over


def test_plots_differ_with_the_certificate(tmp_path: Path) -> None:
    pictures = {plot_bound(_load(name), tmp_path / f"{i}.png").read_bytes()
                for i, name in enumerate(CERTIFICATES)}  # fmt: skip
    assert len(pictures) == len(CERTIFICATES)


def test_alt_text_states_the_numbers(
    hub_certificate: dict[str, Any], vacuous_certificate: dict[str, Any]
) -> None:
    alt = plot_alt_text(hub_certificate)
    assert up(hub_certificate["bound"]["summary"]["bits_per_token_bound"]) in alt
    assert "2,000,000,000" in alt and up(non_vacuous_from(hub_certificate) or 0, 2) in alt
    assert "15.59" in alt and "vacuous: top-1 error rate" in alt
    assert "[" not in alt and "]" not in alt and "\n" not in alt
    text = render_card(hub_certificate, key_fingerprint=FINGERPRINT)
    assert f"![{alt}](bound.png)" in text
    vacuous = plot_alt_text(vacuous_certificate)
    assert "never below the uniform guess" in vacuous and "390,000" in vacuous


# --------------------------------------------------------------------------- certify card (local)


def _public_key(tmp_path: Path) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from certify.signing import public_key_fingerprint

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "signer.pub.pem"
    path.write_bytes(pem)
    return path, public_key_fingerprint(pem)


@pytest.fixture
def public_key(tmp_path: Path) -> tuple[Path, str]:
    """A fresh signer's public key (PEM path) and its fingerprint."""
    return _public_key(tmp_path)


@pytest.mark.parametrize("name", ["certificate.json", "certificate.v2.hub.json"])
def test_cli_card_on_an_existing_card_is_idempotent(
    name: str,
    existing: str,
    public_key: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text(existing, encoding="utf-8")
    argv = ["card", str(folder), "--certificate", str(FIXTURES / name), "--key",
            str(public_key[0]), "--json"]  # fmt: skip
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    first = (folder / "README.md").read_bytes()
    plot = (folder / "bound.png").read_bytes()
    assert plot.startswith(b"\x89PNG")
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert (folder / "README.md").read_bytes() == first
    assert (folder / "bound.png").read_bytes() == plot
    # everything of the owner's, metadata and text, byte for byte
    old_yaml, old_body = split_front_matter(existing)
    new_yaml, new_body = split_front_matter(first.decode())
    assert new_body.startswith(old_body) and old_yaml is not None and new_yaml is not None
    for line in old_yaml.splitlines(keepends=True):
        if not line.startswith(("tags:", "model-index", "- name", "  results", "  -", "    ")):
            assert line in new_yaml
    card = ModelCard(first.decode())
    assert card.data["certify"]["key_fingerprint"] == public_key[1]
    sha = card.data["certify"]["certificate_sha256"]
    assert sha == hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M"
    assert "certify verify tests/fixtures/card --key" in first.decode()  # relative, as given


def test_cli_card_without_a_key_says_how_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["card", str(tmp_path), "--certificate", str(FIXTURES / "certificate.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--key" in err and not (tmp_path / "README.md").exists()


def test_module_names_its_markers() -> None:
    assert card_module.BEGIN_MARKER != card_module.END_MARKER


# --------------------------------------------------------------------------- certify card REPO


def _seed_card(server: Any, repo_id: str, extra: dict[str, bytes] | None = None) -> str:
    server.create_repo(repo_id)
    files = {"README.md": (FIXTURES / "existing.md").read_bytes(), **(extra or {})}
    return str(server.commit_files(repo_id, files))


def test_cli_card_push_keeps_other_metadata_and_is_idempotent(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from huggingface_hub import HfApi

    _seed_card(hub_server, "alice/smol")
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["card", "alice/smol", "--certificate", str(FIXTURES / "certificate.v2.hub.json"),
            "--key", str(public_key[0]), "--push", "--json"]  # fmt: skip
    assert run_cli(argv) == 0
    pushed = json.loads(capsys.readouterr().out)
    assert pushed["changed"] is True and set(pushed["files"]) == {"README.md", "bound.png"}
    info = HfApi(endpoint=hub_server.endpoint, token=hub_server.token).model_info("alice/smol")
    assert info.sha == pushed["commit_oid"]
    data = info.card_data
    assert data.license == "apache-2.0" and data.pipeline_tag == "text-generation"
    assert data["widget"] == [{"text": "Once upon a time"}]
    results = {(r.source_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("Some Leaderboard", "acc_norm")] == 42.1
    assert ("certify", "bits_per_token_bound") in results
    assert ("certify", "top_1_error_bound") not in results  # vacuous
    assert data["certify"]["key_fingerprint"] == public_key[1]
    readme = hub_server.files("alice/smol")["README.md"].decode()
    assert "A small model. This paragraph is the owner's and must not change." in readme
    # this repo does not hold the certificate: no commit to pin
    assert "certify verify alice/smol --key smol/certify-signing-key.pub.pem" in readme
    assert hub_server.files("alice/smol")["bound.png"].startswith(b"\x89PNG")

    head = hub_server.head("alice/smol")
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert hub_server.head("alice/smol") == head  # nothing pushed the second time


def test_cli_card_pins_the_commit_that_holds_the_certificate(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    certificate = FIXTURES / "certificate.v2.hub.json"
    seeded = _seed_card(hub_server, "alice/held", {"certificate.json": certificate.read_bytes()})
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["card", "alice/held", "-c", str(certificate), "--key", str(public_key[0]),
            "--push", "--json"]  # fmt: skip
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    readme = hub_server.files("alice/held")["README.md"].decode()
    assert f"certify verify alice/held --revision {seeded} --key" in readme
    head = hub_server.head("alice/held")
    assert run_cli(argv) == 0  # read from the new head, the pin stays on the certified commit
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert hub_server.head("alice/held") == head


def test_cli_card_push_refuses_a_repo_whose_model_sig_covers_the_card(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = _seed_card(hub_server, "alice/signed", {"model.sig": b"{}"})
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["card", "alice/signed", "-c", str(FIXTURES / "certificate.v2.hub.json"), "--key",
            str(public_key[0]), "--push"]  # fmt: skip
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert "model.sig" in err and "certify push" in err
    assert hub_server.head("alice/signed") == seeded


def test_cli_card_without_push_prints_and_commits_nothing(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = _seed_card(hub_server, "alice/smol2")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    certificate = FIXTURES / "certificate.v2.hub.json"
    argv = ["card", "alice/smol2", "--certificate", str(certificate), "--key", str(public_key[0])]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and BEGIN_MARKER in out
    expected = update_card_text(
        (FIXTURES / "existing.md").read_text(),
        json.loads(certificate.read_bytes()),
        key_fingerprint=public_key[1],
        repo_id="alice/smol2",
        endpoint=hub_server.endpoint,
        certificate_sha256_hex=hashlib.sha256(certificate.read_bytes()).hexdigest(),
    )
    assert out == expected
    assert hub_server.head("alice/smol2") == seeded


def test_cli_card_on_a_missing_repo_is_a_hub_error(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["card", "alice/absent", "--certificate", str(FIXTURES / "certificate.json")]
    assert run_cli([*argv, "--key", str(public_key[0])]) == 11
    assert "alice/absent" in capsys.readouterr().err
