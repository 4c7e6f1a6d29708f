"""Model cards: metadata the Hub reads, edits that leave the rest alone, the plot."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import ModelCard

from certify import card as card_module
from certify.card import (
    BEGIN_MARKER,
    END_MARKER,
    card_results,
    plot_bound,
    render_card,
    split_front_matter,
    update_card_text,
)
from certify.cli import run_cli
from certify.errors import InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "card"
#: set CERTIFY_REGENERATE_GOLDEN=1 to rewrite the golden cards after a deliberate change
REGENERATE = os.environ.get("CERTIFY_REGENERATE_GOLDEN") == "1"
FINGERPRINT = "ab" * 32
DATASET = {
    "id": "HuggingFaceTB/smollm-corpus",
    "config": "cosmopedia-v2",
    "split": "train",
    "revision": "3ba9d605774198c5868892d7a8deda78031a781f",
}


@pytest.fixture
def certificate() -> dict[str, Any]:
    return json.loads((FIXTURES / "certificate.json").read_text())  # type: ignore[no-any-return]


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


def test_new_card_matches_golden_file(certificate: dict[str, Any]) -> None:
    text = render_card(
        certificate,
        key_fingerprint=FINGERPRINT,
        base_model="HuggingFaceTB/SmolLM2-135M",
        dataset=DATASET,
        repo_id="someone/smol-certified",
    )
    assert text == _golden("README.md", text)


def test_updated_card_matches_golden_file(certificate: dict[str, Any], existing: str) -> None:
    text = _update(existing, certificate)
    assert text == _golden("existing.updated.md", text)


def test_metadata_is_what_the_hub_reads(certificate: dict[str, Any]) -> None:
    text = render_card(
        certificate, key_fingerprint=FINGERPRINT, base_model="org/base", dataset=DATASET
    )
    card = ModelCard(text)
    results = card.data.eval_results
    by_type = {result.metric_type: result for result in results}
    summary = certificate["bound"]["summary"]
    assert by_type["bits_per_token_bound"].metric_value == summary["bits_per_token_bound"]
    assert by_type["perplexity_bound"].metric_value == summary["perplexity_bound"]
    top_k = {m["k"]: m["bound"] for m in certificate["bound"]["metrics"] if m.get("k")}
    assert set(top_k) == {1, 10}
    for k, value in top_k.items():
        assert by_type[f"top_{k}_error_bound"].metric_value == value
    for result in results:
        assert result.task_type == "text-generation"
        assert result.dataset_type == DATASET["id"]
        assert result.dataset_config == DATASET["config"]
        assert result.dataset_split == DATASET["split"]
        assert result.dataset_revision == DATASET["revision"]
        assert result.verified is None  # "verified" means evaluated by the Hub: never claimed
    assert "verified" not in text
    assert card.data.base_model == "org/base"
    assert {"certify", "generalization-bound", "compressed"} <= set(card.data.tags)
    key = card.data["certify"]
    assert key["artifact_sha256"] == certificate["artifact"]["sha256"]
    assert key["key_fingerprint"] == FINGERPRINT
    assert key["certificate_version"] == certificate["certificate_version"]
    assert key["artifact_format_version"] == certificate["artifact"]["format_version"]
    assert re.fullmatch(r"[0-9a-f]{64}", key["certificate_sha256"])


def test_body_has_claim_table_assumptions_and_verify_commands(
    certificate: dict[str, Any],
) -> None:
    text = render_card(
        certificate,
        key_fingerprint=FINGERPRINT,
        base_model=None,
        dataset=DATASET,
        repo_id="someone/smol-certified",
    )
    _, body = split_front_matter(text)
    section = body[body.index(BEGIN_MARKER) : body.index(END_MARKER)]
    assert certificate["statement"] in section
    assert "| statement | empirical risk | complexity term | sampling term | bound |" in section
    assert section.count("| bits per token") + section.count("| **bits per token") == 3
    for assumption in certificate["assumptions"]:
        assert assumption in section
    assert "pip install certify" in section
    assert "certify verify someone/smol-certified --key" in section
    assert "![" in section and "(bound.png)" in section
    assert FINGERPRINT in section


def test_update_keeps_other_metadata_and_body_byte_for_byte(
    certificate: dict[str, Any], existing: str
) -> None:
    updated = _update(existing, certificate)
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
    # the other eval result keeps its values
    before = yaml.safe_load(old_yaml)
    after = yaml.safe_load(new_yaml)
    assert after["model-index"][0]["results"][0] == before["model-index"][0]["results"][0]
    assert after["model-index"][0]["name"] == before["model-index"][0]["name"]
    for key in ("language", "license", "library_name", "datasets", "widget", "pipeline_tag"):
        assert after[key] == before[key]
    assert after["tags"][:2] == ["text-generation", "smol"]
    assert len(card_results(updated)) == 1


def test_running_twice_changes_nothing(certificate: dict[str, Any], existing: str) -> None:
    once = _update(existing, certificate)
    assert _update(once, certificate) == once
    new = render_card(certificate, key_fingerprint=FINGERPRINT, base_model=None, dataset=None)
    assert update_card_text(new, certificate, key_fingerprint=FINGERPRINT, base_model=None) == new


def test_a_new_certificate_replaces_ours_only(certificate: dict[str, Any], existing: str) -> None:
    once = _update(existing, certificate)
    newer = copy.deepcopy(certificate)
    newer["bound"]["summary"]["bits_per_token_bound"] = 7.5
    newer["bound"]["summary"]["perplexity_bound"] = 2**7.5
    twice = _update(once, newer)
    results = card_results(twice)
    assert len(results) == 1  # replaced, not duplicated
    values = {m["type"]: m["value"] for m in results[0]["metrics"]}
    assert values["bits_per_token_bound"] == 7.5
    after = yaml.safe_load(split_front_matter(twice)[0] or "")
    assert after["model-index"][0]["results"][0]["metrics"][0]["value"] == 42.1
    assert twice.count(BEGIN_MARKER) == 1 and twice.count(END_MARKER) == 1
    # the body before our section is still the owner's
    assert split_front_matter(twice)[1].startswith(split_front_matter(existing)[1])


def test_card_without_front_matter_gets_one(certificate: dict[str, Any]) -> None:
    text = _update("# My model\n\nHello.\n", certificate)
    assert text.startswith("---\n")
    assert split_front_matter(text)[1].startswith("# My model\n\nHello.\n")


def test_broken_yaml_is_a_one_line_input_error(certificate: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        _update("---\ntags: [unclosed\n---\nbody\n", certificate)
    assert "\n" not in str(caught.value)


def test_plot_is_a_deterministic_png_written_atomically(
    certificate: dict[str, Any], tmp_path: Path
) -> None:
    first = plot_bound(certificate, tmp_path / "a.png")
    second = plot_bound(certificate, tmp_path / "b.png")
    data = first.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    only_top_k = copy.deepcopy(certificate)
    only_top_k["bound"]["metrics"] = [
        m for m in only_top_k["bound"]["metrics"] if m["name"] == "top_k_error"
    ]
    assert plot_bound(only_top_k, tmp_path / "c.png").read_bytes() != data


def test_cli_card_on_a_local_folder_is_idempotent(
    certificate: dict[str, Any], existing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from certify.signing import public_key_fingerprint

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text(existing, encoding="utf-8")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pub.pem").write_bytes(pem)
    argv = [
        "card",
        str(folder),
        "--certificate",
        str(FIXTURES / "certificate.json"),
        "--key",
        str(tmp_path / "key.pub.pem"),
        "--json",
    ]
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    first = (folder / "README.md").read_bytes()
    assert (folder / "bound.png").read_bytes().startswith(b"\x89PNG")
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert (folder / "README.md").read_bytes() == first
    card = ModelCard(first.decode())
    assert card.data["certify"]["key_fingerprint"] == public_key_fingerprint(pem)
    sha = card.data["certify"]["certificate_sha256"]
    import hashlib

    assert sha == hashlib.sha256((FIXTURES / "certificate.json").read_bytes()).hexdigest()
    assert card.data.base_model == certificate["model"]["source"]


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


@pytest.fixture
def public_key(tmp_path: Path) -> tuple[Path, str]:
    """A fresh signer's public key (PEM path) and its fingerprint."""
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


def _seed_card(server: Any, repo_id: str) -> str:
    server.create_repo(repo_id)
    return str(server.commit_files(repo_id, {"README.md": (FIXTURES / "existing.md").read_bytes()}))


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
    argv = [
        "card",
        "alice/smol",
        "--certificate",
        str(FIXTURES / "certificate.json"),
        "--key",
        str(public_key[0]),
        "--push",
        "--json",
    ]
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
    assert data["certify"]["key_fingerprint"] == public_key[1]
    readme = hub_server.files("alice/smol")["README.md"].decode()
    assert "A small model. This paragraph is the owner's and must not change." in readme
    assert "certify verify alice/smol --key" in readme
    assert hub_server.files("alice/smol")["bound.png"].startswith(b"\x89PNG")

    head = hub_server.head("alice/smol")
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert hub_server.head("alice/smol") == head  # nothing pushed the second time


def test_cli_card_without_push_prints_and_commits_nothing(
    hub_server: Any,
    public_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = _seed_card(hub_server, "alice/smol2")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    certificate = str(FIXTURES / "certificate.json")
    argv = ["card", "alice/smol2", "--certificate", certificate, "--key", str(public_key[0])]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and BEGIN_MARKER in out
    expected = _update_for_repo(
        (FIXTURES / "existing.md").read_text(), public_key[1], hub_server.endpoint
    )
    assert out == expected
    assert hub_server.head("alice/smol2") == seeded


def _update_for_repo(existing_text: str, fingerprint: str, endpoint: str) -> str:
    import hashlib

    raw = (FIXTURES / "certificate.json").read_bytes()
    certificate = json.loads(raw)
    return update_card_text(
        existing_text,
        certificate,
        key_fingerprint=fingerprint,
        base_model=certificate["model"]["source"],
        dataset={"id": certificate["data"]["source"], "revision": certificate["data"]["revision"]},
        repo_id="alice/smol2",
        endpoint=endpoint,
        certificate_sha256_hex=hashlib.sha256(raw).hexdigest(),
    )


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
