"""Publishing to the Hub, against the local stand-in server (tests/hubserver.py).

Every test reads back with plain huggingface_hub (not with certify's own code), and
every fault test checks the server's repo state: nothing half-committed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _runfolder import make_run_folder
from huggingface_hub import HfApi, constants, hf_hub_download

from certify import hub
from certify.certificate import published_number
from certify.cli import run_cli
from certify.errors import (
    AuthenticationError,
    CertificateError,
    HubError,
    InvalidInputError,
    ModelError,
    UsageError,
)

RUN_FILES = {
    "README.md",
    "bound.png",
    "certificate.dsse.json",
    "certificate.json",
    "certify-signing-key.pub.pem",
    "model.certz",
    "model.sig",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, toy_model: Path) -> dict[str, Any]:
    """One real signed run folder, built once for this file."""
    out = tmp_path_factory.mktemp("hub") / "run"
    made = make_run_folder(out, toy_model)
    # a private key left in the folder by mistake must never be uploaded
    shutil.copyfile(made["private_key"], out / "oops-signing-key.pem")
    made["dir"] = out
    return made


def _api(server: Any, token: str | None = None) -> HfApi:
    return HfApi(endpoint=server.endpoint, token=token or server.token)


def _single_line(error: BaseException, server: Any) -> str:
    text = str(error)
    assert "\n" not in text
    for token in server.tokens:
        assert token not in text
    return text


def test_push_publishes_everything_in_one_commit(hub_server: Any, run: dict[str, Any]) -> None:
    result = hub.push_run(
        run["dir"], "alice/toy-certified", endpoint=hub_server.endpoint, token=hub_server.token
    )
    assert set(result.files) == RUN_FILES  # the private key stayed home
    log = hub_server.commit_log("alice/toy-certified")
    assert log[0]["oid"] == result.commit_oid
    assert len(log) == 2  # the repo's initial commit, then exactly one with every file
    assert set(log[0]["files"]) - set(log[1]["files"]) == RUN_FILES
    assert result.commit_url.endswith(result.commit_oid)

    api = _api(hub_server)
    assert set(api.list_repo_files("alice/toy-certified")) == RUN_FILES | {".gitattributes"}
    info = api.model_info("alice/toy-certified")
    assert info.sha == result.commit_oid
    types = {r.metric_type: r for r in info.card_data.eval_results}
    summary = run["certificate"]["bound"]["summary"]
    assert types["bits_per_token_bound"].metric_value == float(
        published_number(summary["bits_per_token_bound"])
    )
    # only non-vacuous statements are results: top-1 error is vacuous in this run
    assert set(types) == {"bits_per_token_bound", "perplexity_bound", "top_10_error_bound"}
    assert info.card_data["certify"]["artifact_sha256"] == run["certificate"]["artifact"]["sha256"]
    for name in RUN_FILES:
        path = hf_hub_download(
            "alice/toy-certified", name, endpoint=hub_server.endpoint, token=hub_server.token
        )
        assert Path(path).read_bytes() == (run["dir"] / name).read_bytes()


def test_downloaded_run_verifies_from_the_repo(
    hub_server: Any,
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = hub.push_run(
        run["dir"], "alice/toy-certified", endpoint=hub_server.endpoint, token=hub_server.token
    )
    folder = hub.download_run("alice/toy-certified", endpoint=hub_server.endpoint)
    assert folder.name == pushed.commit_oid  # pinned to the commit it came from
    for name in RUN_FILES:
        assert (folder / name).read_bytes() == (run["dir"] / name).read_bytes()
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    code = run_cli(["verify", "alice/toy-certified", "--key", str(run["public_key"]), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, [c for c in report["checks"] if not c["passed"]]
    assert report["passed"] is True


def test_push_over_plain_lfs_when_xet_is_disabled(
    hub_server: Any, run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # what HF_HUB_DISABLE_XET=1 sets
    hub_server.lfs_threshold_bytes = 32 * 1024
    result = hub.push_run(
        run["dir"], "alice/toy-lfs", endpoint=hub_server.endpoint, token=hub_server.token
    )
    paths = [path for _, path in hub_server.requests]
    assert "/alice/toy-lfs.git/info/lfs/objects/batch" in paths
    assert any(path.startswith("/lfs-upload/") for path in paths)
    tree = {f.path: f for f in _api(hub_server).list_repo_tree("alice/toy-lfs", recursive=True)}
    assert tree["model.certz"].lfs is not None
    assert tree["model.certz"].lfs.sha256 == run["certificate"]["artifact"]["sha256"]
    assert tree["certificate.json"].lfs is None  # small files still go inline
    path = hf_hub_download("alice/toy-lfs", "model.certz", endpoint=hub_server.endpoint)
    assert Path(path).read_bytes() == (run["dir"] / "model.certz").read_bytes()
    assert hub_server.head("alice/toy-lfs") == result.commit_oid


def test_cli_push_in_a_subprocess_with_xet_disabled_by_environment(
    hub_server: Any, run: dict[str, Any], tmp_path: Path
) -> None:
    """The real environment path: HF_ENDPOINT, HF_TOKEN and HF_HUB_DISABLE_XET=1."""
    import os
    import subprocess
    import sys

    hub_server.lfs_threshold_bytes = 32 * 1024
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_server.endpoint,
        "HF_TOKEN": hub_server.token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    argv = ["push", str(run["dir"]), "--repo-id", "alice/sub", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "certify", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert hub_server.head("alice/sub") == result["commit_oid"]
    assert any(path.startswith("/lfs-upload/") for _, path in hub_server.requests)
    stored = hub_server.files("alice/sub")
    assert stored["model.certz"] == (run["dir"] / "model.certz").read_bytes()


def test_cli_push_to_a_new_branch_of_a_private_repo(
    hub_server: Any,
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["push", str(run["dir"]), "--repo-id", "alice/toy-private", "--private"]
    code = run_cli([*argv, "--revision", "certified", "--commit-message", "first", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["revision"] == "certified"
    assert hub_server.head("alice/toy-private", "certified") == result["commit_oid"]
    assert hub_server.head("alice/toy-private", "main") != result["commit_oid"]
    assert hub_server.commit_log("alice/toy-private", "certified")[0]["message"] == "first"
    assert _api(hub_server).model_info("alice/toy-private").private is True
    with pytest.raises(Exception, match=r"404|Repository Not Found"):
        _api(hub_server, "hf_test_bob").model_info("alice/toy-private")


def test_default_commit_message_names_the_headline(hub_server: Any, run: dict[str, Any]) -> None:
    hub.push_run(run["dir"], "alice/msg", endpoint=hub_server.endpoint, token=hub_server.token)
    message = hub_server.commit_log("alice/msg")[0]["message"]
    bits = run["certificate"]["bound"]["summary"]["bits_per_token_bound"]
    assert message.startswith("certify: ") and f"≤ {published_number(bits)} bits/token" in message
    assert "at 95% confidence" in message
    assert str(run["dir"].parent) not in message  # a local model goes by its short name
    assert message.startswith(f"certify: {Path(run['certificate']['model']['source']).name}: ")


# --------------------------------------------------------------------------- faults


def _assert_untouched(server: Any, repo_id: str, head: str | None) -> None:
    assert server.head(repo_id) == head
    if head is not None:
        assert set(server.files(repo_id)) == {".gitattributes"}


def test_no_token_fails_before_any_request(hub_server: Any, run: dict[str, Any]) -> None:
    with pytest.raises(AuthenticationError) as caught:
        hub.push_run(run["dir"], "alice/none", endpoint=hub_server.endpoint, token=None)
    assert "HF_TOKEN" in _single_line(caught.value, hub_server)
    assert hub_server.requests == []


def test_rejected_token_is_an_authentication_error(hub_server: Any, run: dict[str, Any]) -> None:
    with pytest.raises(AuthenticationError) as caught:
        hub.push_run(run["dir"], "alice/bad", endpoint=hub_server.endpoint, token="hf_wrong")
    assert "401" in _single_line(caught.value, hub_server)
    _assert_untouched(hub_server, "alice/bad", None)


def test_cli_exit_code_for_rejected_token(
    hub_server: Any,
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret")
    code = run_cli(
        ["push", str(run["dir"]), "--repo-id", "alice/x", "--endpoint", hub_server.endpoint]
    )
    err = capsys.readouterr().err
    assert code == 12
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0] and "hf_wrong_secret" not in err


def test_someone_elses_repo_is_forbidden(hub_server: Any, run: dict[str, Any]) -> None:
    hub_server.create_repo("bob/model", owner="bob")
    head = hub_server.head("bob/model")
    with pytest.raises(AuthenticationError) as caught:
        hub.push_run(run["dir"], "bob/model", endpoint=hub_server.endpoint, token=hub_server.token)
    assert "403" in _single_line(caught.value, hub_server)
    _assert_untouched(hub_server, "bob/model", head)
    with pytest.raises(AuthenticationError, match="403"):
        hub.push_run(run["dir"], "bob/new", endpoint=hub_server.endpoint, token=hub_server.token)
    _assert_untouched(hub_server, "bob/new", None)


def test_server_error_during_commit_leaves_no_commit(hub_server: Any, run: dict[str, Any]) -> None:
    hub_server.create_repo("alice/flaky")
    head = hub_server.head("alice/flaky")
    hub_server.fail("/commit/", method="POST", status=500, times=1)
    with pytest.raises(HubError) as caught:
        hub.push_run(
            run["dir"], "alice/flaky", endpoint=hub_server.endpoint, token=hub_server.token
        )
    assert "500" in _single_line(caught.value, hub_server)
    _assert_untouched(hub_server, "alice/flaky", head)
    # the next try goes through, in one commit
    result = hub.push_run(
        run["dir"], "alice/flaky", endpoint=hub_server.endpoint, token=hub_server.token
    )
    assert set(hub_server.files("alice/flaky")) == RUN_FILES | {".gitattributes"}
    assert hub_server.commit_log("alice/flaky")[0]["oid"] == result.commit_oid


def test_failed_lfs_upload_leaves_no_commit(
    hub_server: Any, run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)  # skip retry back-off
    hub_server.lfs_threshold_bytes = 32 * 1024
    hub_server.create_repo("alice/lfs-fail")
    head = hub_server.head("alice/lfs-fail")
    fault = hub_server.fail("/lfs-upload/", method="PUT", status=500, times=None)
    with pytest.raises(HubError) as caught:
        hub.push_run(
            run["dir"], "alice/lfs-fail", endpoint=hub_server.endpoint, token=hub_server.token
        )
    assert "500" in _single_line(caught.value, hub_server)
    assert fault.hits > 1  # the client retried, then gave up
    assert not any("/commit/" in path for _, path in hub_server.requests)
    _assert_untouched(hub_server, "alice/lfs-fail", head)


def test_missing_revision_is_a_one_line_error(
    hub_server: Any,
    run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub.push_run(run["dir"], "alice/rev", endpoint=hub_server.endpoint, token=hub_server.token)
    head = hub_server.head("alice/rev")
    with pytest.raises(HubError) as caught:
        hub.download_run("alice/rev", "no-such-branch", endpoint=hub_server.endpoint)
    assert "no-such-branch" in _single_line(caught.value, hub_server)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    code = run_cli(["verify", "alice/rev", "--revision", "no-such-branch"])
    assert code == 11 and "no-such-branch" in capsys.readouterr().err
    with pytest.raises(UsageError):
        hub.push_run(
            run["dir"],
            "alice/rev",
            revision="0" * 40,
            endpoint=hub_server.endpoint,
            token=hub_server.token,
        )
    assert hub_server.head("alice/rev") == head


def test_snapshot_errors_for_models(hub_server: Any) -> None:
    with pytest.raises(ModelError, match="not found"):
        hub.download_snapshot("alice/absent", None, ["*.json"], endpoint=hub_server.endpoint)
    with pytest.raises(AuthenticationError, match="401"):
        hub.download_snapshot(
            "alice/absent", None, ["*.json"], endpoint=hub_server.endpoint, token="hf_wrong"
        )


def test_snapshot_is_pinned_to_the_resolved_commit(hub_server: Any) -> None:
    hub_server.create_repo("alice/weights")
    first = hub_server.commit_files("alice/weights", {"config.json": b"{}"})
    folder, commit = hub.download_snapshot(
        "alice/weights", None, ["*.json"], endpoint=hub_server.endpoint
    )
    assert commit == first and (folder / "config.json").read_bytes() == b"{}"
    hub_server.commit_files("alice/weights", {"config.json": b'{"a": 1}'})
    folder, commit = hub.download_snapshot(
        "alice/weights", first, ["*.json"], endpoint=hub_server.endpoint
    )
    assert commit == first and (folder / "config.json").read_bytes() == b"{}"


def test_offline_mode_is_a_hub_error(hub_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="offline"):
        hub.download_snapshot("alice/anything", None, ["*"], endpoint=hub_server.endpoint)


def test_push_refuses_an_artifact_the_certificate_does_not_name(
    hub_server: Any, run: dict[str, Any], tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run["dir"], copy)
    data = bytearray((copy / "model.certz").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.certz").write_bytes(bytes(data))
    with pytest.raises(CertificateError, match="sha256"):
        hub.push_run(copy, "alice/x", endpoint=hub_server.endpoint, token=hub_server.token)
    (copy / "certificate.dsse.json").unlink()
    with pytest.raises(InvalidInputError, match=r"certificate\.dsse\.json"):
        hub.push_run(copy, "alice/x", endpoint=hub_server.endpoint, token=hub_server.token)
    assert hub_server.requests == []


# --------------------------------------------------------------------------- certify card


def _seed_card(server: Any, repo_id: str) -> str:
    existing = (Path(__file__).parent / "fixtures" / "card" / "existing.md").read_bytes()
    server.create_repo(repo_id)
    return str(server.commit_files(repo_id, {"README.md": existing}))


def test_card_push_refused_when_the_branch_moved(hub_server: Any) -> None:
    seeded = _seed_card(hub_server, "alice/race")
    text, commit = hub.fetch_card("alice/race", endpoint=hub_server.endpoint)
    assert commit == seeded and text is not None
    moved = hub_server.commit_files("alice/race", {"other.txt": b"someone else"})
    with pytest.raises(HubError, match="changed"):
        hub.push_card(
            "alice/race",
            text + "\nmine\n",
            parent_commit=commit,
            endpoint=hub_server.endpoint,
            token=hub_server.token,
        )
    assert hub_server.head("alice/race") == moved


def test_whoami_names_the_token_owner(hub_server: Any) -> None:
    assert hub.whoami(endpoint=hub_server.endpoint, token="hf_test_bob") == "bob"
    with pytest.raises(AuthenticationError):
        hub.whoami(endpoint=hub_server.endpoint, token="hf_wrong")


def test_errors_never_echo_the_token(hub_server: Any, run: dict[str, Any]) -> None:
    secret = "hf_this_is_secret_0123456789"
    failures: list[Callable[[], Any]] = [
        lambda: hub.push_run(run["dir"], "alice/s", endpoint=hub_server.endpoint, token=secret),
        lambda: hub.download_run("alice/s", endpoint=hub_server.endpoint, token=secret),
    ]
    for failing in failures:
        with pytest.raises(AuthenticationError) as caught:
            failing()
        assert secret not in str(caught.value)


# --------------------------------------------------------------------------- the card after a push


def _copy_run(run: dict[str, Any], folder: Path) -> Path:
    shutil.copytree(run["dir"], folder)
    return folder


def _official_model_signing(folder: Path, public_key: Path) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", "--signature",
         str(folder / "model.sig"), "--public_key", str(public_key), str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_push_pins_the_card_and_plain_huggingface_hub_reads_it_back(
    hub_server: Any,
    run: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from huggingface_hub import ModelCard, metadata_load, snapshot_download

    folder = _copy_run(run, tmp_path / "run")
    result = hub.push_run(
        folder,
        "alice/pinned",
        endpoint=hub_server.endpoint,
        token=hub_server.token,
        signing_key=run["private_key"],
    )
    commit, card_commit = result.commit_oid, result.card_commit_oid
    assert card_commit is not None and hub_server.head("alice/pinned") == card_commit
    log = hub_server.commit_log("alice/pinned")
    assert [entry["oid"] for entry in log[:2]] == [card_commit, commit]
    # the second commit changes the card and the signatures over it, nothing else
    first, second = hub_server.files("alice/pinned", commit), hub_server.files("alice/pinned")
    assert set(first) == set(second)
    changed = {name for name in first if first[name] != second[name]}
    assert changed <= {"README.md", "model.sig", "certificate.dsse.json"}
    assert {"README.md", "model.sig"} <= changed
    assert first["model.certz"] == second["model.certz"]
    assert first["certificate.json"] == second["certificate.json"]

    # plain huggingface_hub reads the card back: the metrics, and where to verify
    card = ModelCard.load("alice/pinned")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    summary = run["certificate"]["bound"]["summary"]
    assert results["bits_per_token_bound"] == float(
        published_number(summary["bits_per_token_bound"])
    )
    assert set(results) == {"bits_per_token_bound", "perplexity_bound", "top_10_error_bound"}
    readme = hf_hub_download("alice/pinned", "README.md", endpoint=hub_server.endpoint)
    metadata = metadata_load(readme)
    assert metadata is not None
    assert metadata["certify"]["published"] == {"repo_id": "alice/pinned", "revision": commit}
    assert metadata["model-index"] == card.data.to_dict()["model-index"]
    text = Path(readme).read_text(encoding="utf-8")
    assert f"certify verify alice/pinned --revision {commit} --key" in text
    assert f"hf download alice/pinned --revision {commit} --local-dir pinned" in text
    assert (folder / "README.md").read_text(encoding="utf-8") == text  # the folder = the head

    # the pinned commit verifies: certify, and OpenSSF's own CLI on a download of it
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    argv = ["verify", "alice/pinned", "--revision", commit, "--key", str(run["public_key"])]
    assert run_cli([*argv, "--json"]) == 0, capsys.readouterr().out
    capsys.readouterr()
    for revision, name in ((commit, "at-commit"), (card_commit, "at-head")):
        download = Path(
            snapshot_download(
                "alice/pinned",
                revision=revision,
                local_dir=tmp_path / name,
                endpoint=hub_server.endpoint,
                token=hub_server.token,
            )
        )
        done = _official_model_signing(download, run["public_key"])
        assert done.returncode == 0, done.stdout + done.stderr
    done = _official_model_signing(folder, run["public_key"])
    assert done.returncode == 0, done.stdout + done.stderr

    # pushing the same folder again keeps the pin: no second card commit
    again = hub.push_run(
        folder,
        "alice/pinned",
        endpoint=hub_server.endpoint,
        token=hub_server.token,
        signing_key=run["private_key"],
    )
    assert again.card_commit_oid is None
    assert hub_server.head("alice/pinned") == again.commit_oid


def test_a_failed_card_commit_leaves_the_pushed_folder_as_it_was(
    hub_server: Any, run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy_run(run, tmp_path / "run")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    real = hub._hf_api

    class FailingSecondCommit:
        def __init__(self, api: Any) -> None:
            self.api = api

        def __getattr__(self, name: str) -> Any:
            return getattr(self.api, name)

        def create_commit(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("parent_commit"):
                raise RuntimeError("the Hub went away")
            return self.api.create_commit(*args, **kwargs)

    monkeypatch.setattr(hub, "_hf_api", lambda *a: FailingSecondCommit(real(*a)))
    result = hub.push_run(
        folder,
        "alice/halfway",
        endpoint=hub_server.endpoint,
        token=hub_server.token,
        signing_key=run["private_key"],
    )
    assert result.card_commit_oid is None
    assert hub_server.head("alice/halfway") == result.commit_oid
    after = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    assert after == before


def test_push_without_the_runs_key_leaves_the_card_unpinned(
    hub_server: Any, run: dict[str, Any], tmp_path: Path
) -> None:
    from certify import signing

    folder = _copy_run(run, tmp_path / "run")
    other = signing.generate_key(tmp_path / "other-keys")
    result = hub.push_run(
        folder,
        "alice/unpinned",
        endpoint=hub_server.endpoint,
        token=hub_server.token,
        signing_key=other.private_key_path,  # not the folder's key: cannot sign again
    )
    assert result.card_commit_oid is None
    assert len(hub_server.commit_log("alice/unpinned")) == 2  # the repo's first, then ours
