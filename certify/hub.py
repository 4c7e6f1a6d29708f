"""The network: every request to the Hugging Face Hub (or a mirror) goes through here.

No other module imports a network client. Values such as the token and the endpoint
are arguments: the CLI reads ``HF_TOKEN`` / ``HF_ENDPOINT`` and passes them down.
``token=None`` lets huggingface_hub find the stored login itself (``HF_TOKEN``, then
the token file written by ``hf auth login``); ``endpoint=None`` means the endpoint
huggingface_hub read from ``HF_ENDPOINT`` when it was imported (default
https://huggingface.co). Pass the endpoint explicitly whenever it is known: huggingface_hub
reads ``HF_ENDPOINT`` only once, at import.

Every failure of the Hub becomes one typed, one-line error from :mod:`certify.errors`
that says what was expected and how to fix it; tokens never appear in messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from certify import card, signing
from certify._files import (
    CARD_NAME,
    CERTIFICATE_NAME,
    PUBLIC_KEY_NAME,
    file_sha256,
    published_files,
    temp_path,
    write_bytes_atomic,
)
from certify.bound import confidence_text
from certify.errors import (
    AuthenticationError,
    CertificateError,
    CertifyError,
    DataError,
    HubError,
    InvalidInputError,
    ModelError,
    UsageError,
)
from certify.records import PushResult

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


# --------------------------------------------------------------------------- errors


def _endpoint_of(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _is_transport_error(error: BaseException) -> bool:
    """True for connection failures and timeouts of whatever HTTP client the hub library uses."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TransportError", "ConnectError", "ConnectTimeout", "Timeout"})


def _server_text(error: BaseException) -> str:
    """The server's own short message of an HTTP error, on one line (empty if none)."""
    message = getattr(error, "server_message", None) or ""
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    return first[:200]


def _status_of(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def translate_error(
    error: BaseException,
    *,
    action: str,
    repo_id: str,
    revision: str | None = None,
    endpoint: str | None = None,
    missing: type[CertifyError] = HubError,
) -> CertifyError:
    """Map a huggingface_hub / HTTP exception to one typed, one-line certify error.

    ``action`` completes "while ..." (e.g. ``"downloading"``); ``missing`` is the class
    used for a repository or revision that does not exist (``ModelError`` when the repo
    is a model to certify, ``HubError`` for a published certificate).
    """
    from huggingface_hub import errors as hf_errors

    where = _endpoint_of(endpoint)
    at = f"{repo_id}@{revision}" if revision else repo_id
    # Unwrap the library's "not in cache" wrapper to find what the server actually said.
    cause: BaseException = error
    seen = 0
    # (and the "Error while uploading" RuntimeError that wraps a failed LFS upload).
    while (
        isinstance(cause, hf_errors.LocalEntryNotFoundError | RuntimeError)
        and cause.__cause__ is not None
        and seen < 5
    ):
        cause = cause.__cause__
        seen += 1

    if isinstance(cause, hf_errors.OfflineModeIsEnabled) or (
        isinstance(cause, hf_errors.LocalEntryNotFoundError) and "offline" in str(cause).lower()
    ):
        return HubError(
            f"cannot reach {where} while {action} {at}: offline mode is on and the files are "
            "not in the local cache",
            hint="unset HF_HUB_OFFLINE, or download them once while online",
        )
    if isinstance(cause, hf_errors.GatedRepoError):
        return AuthenticationError(
            f"{repo_id} on {where} is gated and this token has no access to it",
            hint="accept its terms on the model page, then use a token of that account "
            "(HF_TOKEN or `hf auth login`)",
        )
    if isinstance(cause, hf_errors.RevisionNotFoundError):
        return missing(
            f"revision {revision!r} does not exist in {repo_id} on {where}",
            hint="pass an existing branch, tag or 40-hex commit with --revision",
        )
    if isinstance(cause, hf_errors.RemoteEntryNotFoundError):
        return missing(
            f"a file is missing from {at} on {where} while {action}: "
            f"{_server_text(cause) or cause}",
            hint="check that the repository holds a complete certify run",
        )
    status = _status_of(cause)
    if status == 401 and not isinstance(cause, hf_errors.RepositoryNotFoundError):
        return AuthenticationError(
            f"{where} rejected the token (401) while {action} {at}",
            hint="set HF_TOKEN to a valid token or run `hf auth login`",
        )
    if isinstance(cause, hf_errors.RepositoryNotFoundError):
        return missing(
            f"repository {repo_id} not found on {where} (or it is private and the token "
            "cannot see it)",
            hint="check the repo id; for a private repo set HF_TOKEN or run `hf auth login`",
        )
    if status == 403:
        return AuthenticationError(
            f"{where} refused {action} {at} (403): the token has no write access there"
            + (f" ({_server_text(cause)})" if _server_text(cause) else ""),
            hint="use a write token of the namespace's owner, or push to your own namespace",
        )
    if status in (409, 412):
        return HubError(
            f"{at} changed on {where} while {action} it (HTTP {status}); nothing was committed",
            hint="run the command again",
        )
    if isinstance(cause, hf_errors.LocalEntryNotFoundError):
        return HubError(
            f"cannot reach {where} while {action} {at} and the files are not in the local cache",
            hint="check the network connection and the endpoint (HF_ENDPOINT / --endpoint)",
        )
    if _is_transport_error(cause) or isinstance(cause, ConnectionError | TimeoutError):
        return HubError(
            f"cannot reach {where} while {action} {at}: {type(cause).__name__}",
            hint="check the network connection and the endpoint (HF_ENDPOINT / --endpoint)",
        )
    if status is not None:
        detail = _server_text(cause)
        return HubError(
            f"{where} answered HTTP {status} while {action} {at}"
            + (f": {detail}" if detail else ""),
            hint="nothing was committed; retry later",
        )
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
    return HubError(f"{action} {at} on {where} failed: {first_line}")


# --------------------------------------------------------------------------- download


def download_snapshot(
    repo_id: str,
    revision: str | None,
    allow_patterns: list[str],
    *,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    repo_type: str = "model",
) -> tuple[Path, str]:
    """Download the files of ``repo_id`` matching ``allow_patterns`` at one commit.

    Returns the local snapshot folder (inside the huggingface_hub cache, or
    ``cache_dir``) and the 40-hex commit the revision resolved to, so the caller can
    record exactly what it read. Works offline from the cache when HF_HUB_OFFLINE is set.
    Raises :class:`~certify.errors.ModelError` (model repos; ``DataError`` for datasets)
    when the repo or revision does not exist, :class:`AuthenticationError` for gated
    repos and rejected tokens, :class:`HubError` otherwise.
    """

    missing: type[CertifyError] = DataError if repo_type == "dataset" else ModelError
    return _snapshot(
        repo_id, revision, allow_patterns, endpoint, token, cache_dir, repo_type, missing
    )


def _snapshot(
    repo_id: str,
    revision: str | None,
    allow_patterns: list[str],
    endpoint: str | None,
    token: str | None,
    cache_dir: str | Path | None,
    repo_type: str,
    missing: type[CertifyError],
) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=list(allow_patterns),
            endpoint=_endpoint_of(endpoint),
            token=token,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except CertifyError:
        raise
    except Exception as error:
        raise translate_error(
            error,
            action="downloading",
            repo_id=repo_id,
            revision=revision,
            endpoint=endpoint,
            missing=missing,
        ) from error
    path = Path(folder)
    # Without local_dir, huggingface_hub always returns <cache>/snapshots/<commit sha>.
    commit = path.name
    if not _COMMIT_SHA.match(commit):
        raise HubError(
            f"could not tell which commit of {repo_id} was downloaded (got folder {path.name!r})",
            hint="pass --revision with a 40-hex commit",
        )
    return path, commit


def safetensors_headers(
    repo_id: str,
    revision: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(file, tensor name, shape, safetensors dtype tag) of every tensor of a Hub model.

    Reads only the safetensors headers, by HTTP range requests (huggingface_hub's
    ``get_safetensors_metadata``: the first 100 kB of each weight file, and the rest of a
    longer header), never the weights. ``revision`` should be the commit the model's
    other files were downloaded at. Used by ``certify plan``.
    """
    try:
        metadata = _hf_api(endpoint, token).get_safetensors_metadata(repo_id, revision=revision)
    except CertifyError:
        raise
    except Exception as error:
        if type(error).__name__ == "NotASafetensorsRepoError":
            raise ModelError(
                f"{repo_id} has no model.safetensors or model.safetensors.index.json",
                hint="certify reads only safetensors weights",
            ) from None
        raise translate_error(
            error,
            action="reading the safetensors headers of",
            repo_id=repo_id,
            revision=revision,
            endpoint=endpoint,
            missing=ModelError,
        ) from error
    found = []
    for file_name in sorted(metadata.files_metadata):
        tensors = metadata.files_metadata[file_name].tensors
        for name, info in tensors.items():
            found.append((file_name, name, tuple(int(d) for d in info.shape), str(info.dtype)))
    return found


def _hf_api(endpoint: str | None, token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint_of(endpoint), token=token)


# --------------------------------------------------------------------------- runs

#: Files every published run has; ``push_run`` refuses a folder without them.
REQUIRED_RUN_FILES: tuple[str, ...] = ("certificate.json", "certificate.dsse.json", "model.certz")


def run_files(run_dir: Path) -> list[Path]:
    """The files of a run folder that ``push_run`` publishes, sorted by name.

    :func:`certify._files.published_files`: the same selection model.sig signs.
    """
    return published_files(run_dir)


def _read_certificate(run_dir: Path) -> dict[str, Any]:

    try:
        data = json.loads((run_dir / "certificate.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CertificateError(
            f"cannot read {run_dir / 'certificate.json'}: {error}",
            hint="re-run `certify run` to write a complete run folder",
        ) from error
    if not isinstance(data, dict):
        raise CertificateError(f"{run_dir / 'certificate.json'} is not a JSON object")
    return data


def check_run_folder(run_dir: Path) -> dict[str, Any]:
    """Check that ``run_dir`` is a complete run whose artifact is the one certified.

    Returns the certificate. Raises :class:`InvalidInputError` for missing files and
    :class:`CertificateError` when ``model.certz`` is not the file the certificate names
    (so a certificate is never published next to another artifact).
    """

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InvalidInputError(
            f"{run_dir} is not a folder",
            field="run_dir",
            hint="pass the output folder of `certify run`",
        )
    missing = [name for name in REQUIRED_RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise InvalidInputError(
            f"{run_dir} lacks {', '.join(missing)}; "
            f"a run folder holds {', '.join(REQUIRED_RUN_FILES)}",
            field="run_dir",
            hint="run `certify run` (or finish it) before pushing",
        )
    certificate = _read_certificate(run_dir)
    artifact = certificate.get("artifact")
    if isinstance(artifact, dict) and "sha256" in artifact:
        artifact_path = run_dir / "model.certz"
        actual_size = artifact_path.stat().st_size
        if artifact.get("size_bytes") is not None and int(artifact["size_bytes"]) != actual_size:
            raise CertificateError(
                f"model.certz is {actual_size} bytes but the certificate names "
                f"{artifact['size_bytes']} bytes",
                hint="the artifact changed after certification; re-run `certify run`",
            )
        if file_sha256(artifact_path) != artifact["sha256"]:
            raise CertificateError(
                "model.certz does not have the sha256 the certificate names",
                hint="the artifact changed after certification; re-run `certify run`",
            )
    return certificate


def headline(certificate: dict[str, Any]) -> str:
    """One line naming the certified numbers (used in commit messages).

    Bounds rounded up, confidence exact, a vacuous bound said so, and a local model named
    by its short name (a commit message is as public as the card).
    """
    bound = certificate.get("bound") or {}
    summary = bound.get("summary") or {}
    bits = summary.get("bits_per_token_bound")
    parts = []
    if isinstance(bits, int | float):
        parts.append(f"≤ {card.up(bits)} bits/token")
        if summary.get("vacuous"):
            parts[-1] += " (vacuous)"
    perplexity = summary.get("perplexity_bound")
    if isinstance(perplexity, int | float) and not summary.get("vacuous"):
        parts.append(f"perplexity ≤ {card.up(perplexity)}")
    delta = bound.get("delta")
    confidence = (
        f" at {confidence_text(float(delta))} confidence"
        if isinstance(delta, int | float) and 0 < delta < 1
        else ""
    )
    model = certificate.get("model") or {}
    source = card.source_ref(model.get("source"), model.get("revision"), "model").name
    return f"{source}: {', '.join(parts) or 'certificate'}{confidence}"


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    signing_key: str | Path | None = None,
    key_passphrase: bytes | None = None,
    pin_card: bool = True,
) -> PushResult:
    """Publish a run folder to a model repo in ONE atomic commit.

    Never publishes a folder whose ``model.sig`` does not cover exactly the files it
    publishes: when it does not (missing, or README.md changed by ``certify card``),
    the folder is signed again with ``signing_key`` (the run's private key, through
    :func:`certify.signing.ensure_signed`), else SigningError says how. The repo is
    created if missing (``private`` applies only then); a ``revision`` branch is
    created from ``main`` if missing. All files of :func:`run_files` go in a single
    ``create_commit``, so the certificate is never on the Hub without the artifact it
    names, and a failure leaves the repo unchanged. ``token=None`` uses
    huggingface_hub's stored login; without any token this raises
    :class:`AuthenticationError` before any request.

    ``pin_card`` (with ``signing_key``, not for a pull request): the pushed card cannot
    name its own commit, so a second commit on the same branch, whose parent is the
    first, rewrites only the card's verify instructions to ``certify verify REPO
    --revision COMMIT`` and re-signs model.sig (README.md, model.sig and the envelope
    change; the local folder gets the same bytes). Both commits verify on their own.
    Without a usable key, or if that commit fails, the card stays unpinned and the
    folder unchanged (``card_commit_oid`` None).
    """
    from huggingface_hub import get_token

    run_dir = Path(run_dir)
    _check_repo_id(repo_id)
    certificate = check_run_folder(run_dir)
    signed_again = signing.ensure_signed(run_dir, signing_key, key_passphrase)
    token = token or get_token()
    if not token:
        raise AuthenticationError(
            f"pushing to {repo_id} needs a Hub token with write access",
            hint="set HF_TOKEN or run `hf auth login`",
        )
    files = run_files(run_dir)
    branch = revision or "main"
    try:
        repo_url, info = _commit_run(
            _hf_api(endpoint, token),
            repo_id,
            files,
            private=private,
            branch=branch,
            message=commit_message or f"certify: {headline(certificate)}",
            create_pr=create_pr,
        )
    except CertifyError:
        raise
    except Exception as error:
        raise translate_error(
            error, action="pushing to", repo_id=repo_id, revision=revision, endpoint=endpoint
        ) from error
    card_commit = None
    if pin_card and not create_pr and signing_key is not None:
        card_commit = _pin_pushed_card(
            _hf_api(endpoint, token),
            run_dir,
            certificate,
            repo_id,
            branch,
            str(info.oid),
            signing_key,
            key_passphrase,
            endpoint,
        )
    return PushResult(
        repo_id=repo_id,
        repo_url=str(repo_url),
        revision=branch,
        commit_oid=str(info.oid),
        commit_url=str(info.commit_url),
        files=tuple(path.name for path in files),
        pull_request_url=str(info.pr_url) if getattr(info, "pr_url", None) else None,
        signed_again=signed_again,
        card_commit_oid=card_commit,
    )


def _signing_key_matches(run_dir: Path, signing_key: str | Path, passphrase: bytes | None) -> bool:
    """The key can sign this folder again: it loads, and it is the folder's published key."""
    published = run_dir / PUBLIC_KEY_NAME
    if not Path(signing_key).is_file() or not published.is_file():
        return False
    try:
        key = signing.load_private_key(signing_key, passphrase)
        return bool(
            signing.public_key_fingerprint(key.public_key())
            == signing.public_key_fingerprint(published.read_bytes())
        )
    except CertifyError:
        return False


def _pin_pushed_card(
    api: Any,
    run_dir: Path,
    certificate: dict[str, Any],
    repo_id: str,
    branch: str,
    commit: str,
    signing_key: str | Path,
    passphrase: bytes | None,
    endpoint: str | None,
) -> str | None:
    """Commit the card pinned to ``commit`` (re-signed) on top of it; None if not done."""
    from huggingface_hub import CommitOperationAdd

    readme = run_dir / CARD_NAME
    if not readme.is_file() or not _signing_key_matches(run_dir, signing_key, passphrase):
        return None
    text = readme.read_text(encoding="utf-8")
    pinned = card.pin_card(
        text,
        certificate,
        repo_id=repo_id,
        revision=commit,
        endpoint=_endpoint_of(endpoint),
        certificate_sha256_hex=file_sha256(run_dir / CERTIFICATE_NAME),
    )
    if pinned is None or pinned == text:
        return None
    before = {path.name: path.read_bytes() for path in published_files(run_dir)}
    try:
        write_bytes_atomic(readme, pinned.encode("utf-8"))
        signing.ensure_signed(run_dir, signing_key, passphrase)
        changed = [
            path for path in published_files(run_dir) if before.get(path.name) != path.read_bytes()
        ]
        info = api.create_commit(
            repo_id,
            [
                CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))
                for path in changed
            ],
            commit_message=f"certify: pin the card's verify command to {commit[:12]}",
            repo_type="model",
            revision=branch,
            parent_commit=commit,
        )
    except Exception:
        # the pushed commit stands on its own: put the folder back as it was pushed
        for name, data in before.items():
            if (run_dir / name).read_bytes() != data:
                write_bytes_atomic(run_dir / name, data)
        return None
    return str(info.oid)


def _commit_run(
    api: Any,
    repo_id: str,
    files: list[Path],
    *,
    private: bool,
    branch: str,
    message: str,
    create_pr: bool,
) -> tuple[Any, Any]:
    """(repo url, commit info): create the repo and branch if missing, then one commit."""
    from huggingface_hub import CommitOperationAdd

    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if branch != "main":
        if _COMMIT_SHA.match(branch):
            raise UsageError(
                f"--revision {branch} is a commit id; commits go on a branch",
                hint="pass a branch name such as `certified`",
            )
        api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model")
    info = api.create_commit(
        repo_id,
        [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path)) for path in files],
        commit_message=message,
        repo_type="model",
        revision=branch,
        create_pr=create_pr,
    )
    return repo_url, info


def _check_repo_id(repo_id: str) -> None:

    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", repo_id or ""):
        raise InvalidInputError(
            f"{repo_id!r} is not a repo id of the form NAMESPACE/NAME",
            field="repo_id",
            hint="e.g. --repo-id your-name/gpt2-certified",
        )


def download_run(
    repo_id: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Download a published run (every file of the repo) pinned to one commit.

    Returns a folder of plain files (hard links into the huggingface_hub cache where
    possible, copies otherwise; never symlinks, which verification rejects) named
    after the 40-hex commit it came from, so every file read from it belongs to that
    commit. Raises :class:`HubError` when the repo, the revision or one of
    :data:`REQUIRED_RUN_FILES` is missing.
    """
    _check_repo_id(repo_id)
    snapshot, commit = _snapshot(
        repo_id, revision, ["*"], endpoint, token, cache_dir, "model", HubError
    )
    missing = [name for name in REQUIRED_RUN_FILES if not (snapshot / name).is_file()]
    if missing:
        raise HubError(
            f"{repo_id}@{commit[:12]} on {_endpoint_of(endpoint)} has no {', '.join(missing)}: "
            "it does not hold a certify run",
            hint="publish one with `certify push RUN_DIR --repo-id REPO`",
        )
    # <cache>/models--ns--name/snapshots/<commit> -> <cache>/models--ns--name/certify-runs/<commit>
    return _materialize(snapshot, snapshot.parent.parent / "certify-runs" / commit)


def _materialize(snapshot: Path, target: Path) -> Path:
    """A folder of real files mirroring ``snapshot``, built aside and renamed into place."""

    if target.is_dir() and all(
        (target / path.relative_to(snapshot)).is_file()
        and (target / path.relative_to(snapshot)).stat().st_size == path.stat().st_size
        for path in snapshot.rglob("*")
        if path.is_file()
    ):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(target)
    shutil.rmtree(temp, ignore_errors=True)
    for path in sorted(snapshot.rglob("*")):
        if not path.is_file():
            continue
        destination = temp / path.relative_to(snapshot)
        destination.parent.mkdir(parents=True, exist_ok=True)
        source = path.resolve()
        try:
            os.link(source, destination)
        except OSError:  # another filesystem, or links not allowed: copy
            shutil.copyfile(source, destination)
    temp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temp, target)
    return target


# --------------------------------------------------------------------------- cards


def whoami(*, endpoint: str | None = None, token: str | None = None) -> str:
    """The Hub user name the token belongs to (for a default repo id)."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise AuthenticationError(
            "the Hub cannot say who you are without a token",
            hint="set HF_TOKEN or run `hf auth login`, or pass --repo-id",
        )
    try:
        return str(_hf_api(endpoint, token).whoami(cache=True)["name"])
    except Exception as error:
        raise translate_error(
            error, action="asking who owns", repo_id="the token", endpoint=endpoint
        ) from error


def fetch_card(
    repo_id: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[str | None, str]:
    """README.md of a model repo at one commit: (text or None when absent, commit sha)."""
    from huggingface_hub import hf_hub_download

    _check_repo_id(repo_id)
    api = _hf_api(endpoint, token)
    try:
        info = api.model_info(repo_id, revision=revision)
        commit = str(info.sha)
        names = {sibling.rfilename for sibling in info.siblings or []}
        if "README.md" not in names:
            return None, commit
        path = hf_hub_download(
            repo_id,
            "README.md",
            revision=commit,
            endpoint=_endpoint_of(endpoint),
            token=token,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except CertifyError:
        raise
    except Exception as error:
        raise translate_error(
            error,
            action="reading the card of",
            repo_id=repo_id,
            revision=revision,
            endpoint=endpoint,
        ) from error
    return Path(path).read_text(encoding="utf-8"), commit


def repo_file_names(
    repo_id: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
) -> tuple[str, frozenset[str]]:
    """(commit sha, names of the files) of a model repo at ``revision``."""
    _check_repo_id(repo_id)
    try:
        info = _hf_api(endpoint, token).model_info(repo_id, revision=revision)
    except Exception as error:
        raise translate_error(
            error, action="listing the files of", repo_id=repo_id, revision=revision,
            endpoint=endpoint,
        ) from error  # fmt: skip
    return str(info.sha), frozenset(sibling.rfilename for sibling in info.siblings or [])


def fetch_file(
    repo_id: str,
    filename: str,
    commit: str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> bytes:
    """The bytes of one file of a model repo at one commit."""
    from huggingface_hub import hf_hub_download

    _check_repo_id(repo_id)
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=commit,
            endpoint=_endpoint_of(endpoint),
            token=token,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except Exception as error:
        raise translate_error(
            error, action=f"reading {filename} of", repo_id=repo_id, revision=commit,
            endpoint=endpoint,
        ) from error  # fmt: skip
    return Path(path).read_bytes()


def push_card(
    repo_id: str,
    card_text: str,
    *,
    plot_path: str | Path | None = None,
    revision: str | None = None,
    parent_commit: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Commit README.md (and the plot, as ``bound.png``) in one commit; returns ``PushResult``.

    With ``parent_commit`` (the commit the card was read from) the Hub refuses the
    commit if the branch moved meanwhile, so nobody's concurrent edit is overwritten.
    """
    from huggingface_hub import CommitOperationAdd, get_token

    _check_repo_id(repo_id)
    token = token or get_token()
    if not token:
        raise AuthenticationError(
            f"updating the card of {repo_id} needs a Hub token with write access",
            hint="set HF_TOKEN or run `hf auth login`",
        )
    operations = [CommitOperationAdd("README.md", card_text.encode("utf-8"))]
    names = ["README.md"]
    if plot_path is not None:
        operations.append(CommitOperationAdd(Path(plot_path).name, str(plot_path)))
        names.append(Path(plot_path).name)
    branch = revision or "main"
    try:
        info = _hf_api(endpoint, token).create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "certify: attach certified bounds to the model card",
            repo_type="model",
            revision=branch,
            parent_commit=parent_commit,
            create_pr=create_pr,
        )
    except CertifyError:
        raise
    except Exception as error:
        raise translate_error(
            error,
            action="updating the card of",
            repo_id=repo_id,
            revision=revision,
            endpoint=endpoint,
        ) from error
    return PushResult(
        repo_id=repo_id,
        repo_url=f"{_endpoint_of(endpoint)}/{repo_id}",
        revision=branch,
        commit_oid=str(info.oid),
        commit_url=str(info.commit_url),
        files=tuple(names),
        pull_request_url=str(info.pr_url) if getattr(info, "pr_url", None) else None,
    )


# --- datasets (used by data.py)


def open_hub_dataset(
    dataset_id: str,
    config: str | None,
    split: str,
    revision: str | None,
    *,
    streaming: bool,
    token: str | None = None,
    endpoint: str | None = None,
) -> tuple[Any, str]:
    """Open one split of a Hub dataset through ``datasets``, pinned to a commit.

    Returns the dataset (an ``IterableDataset`` when ``streaming``, so a prefix of a very
    large dataset is read without downloading it whole) and the 40-hex commit that
    ``revision`` resolved to. ``datasets`` and ``huggingface_hub`` read their endpoint once,
    at import; an explicit ``endpoint`` is put in their module settings while the dataset
    is opened (the file URLs it resolves keep it for the later, lazy reads).
    """

    try:
        import datasets

        commit = revision if revision and _COMMIT_SHA.match(revision) else None
        if commit is None:
            info = _hf_api(endpoint, token).dataset_info(dataset_id, revision=revision)
            commit = str(info.sha)
        saved = _point_datasets_at(endpoint)
        try:
            dataset = datasets.load_dataset(
                dataset_id,
                config,
                split=split,
                revision=commit,
                streaming=streaming,
                token=token,
            )
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
    except CertifyError:
        raise
    except ValueError as error:  # unknown config or split: datasets says which exist
        first_line = (str(error).strip().splitlines() or ["ValueError"])[0][:300]
        raise DataError(f"cannot open dataset {dataset_id}: {first_line}") from None
    except Exception as error:
        raise translate_error(
            error,
            action="opening dataset",
            repo_id=dataset_id,
            revision=revision,
            endpoint=endpoint,
            missing=DataError,
        ) from error
    return dataset, commit


def _point_datasets_at(endpoint: str | None) -> list[tuple[Any, str, Any]]:
    """Point ``datasets`` (and the URL helpers of huggingface_hub it uses) at ``endpoint``.

    Returns the (module, name, old value) triples to restore afterwards.
    """
    import datasets
    from huggingface_hub import constants

    if not endpoint or endpoint.rstrip("/") == datasets.config.HF_ENDPOINT.rstrip("/"):
        return []
    target = endpoint.rstrip("/")
    names = [
        (datasets.config, "HF_ENDPOINT"),
        (datasets.config, "HUB_DATASETS_URL"),
        (constants, "ENDPOINT"),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE"),
    ]
    saved = [(module, name, getattr(module, name)) for module, name in names]
    datasets.config.HF_ENDPOINT = target
    datasets.config.HUB_DATASETS_URL = target + "/datasets/{repo_id}/resolve/{revision}/{path}"
    constants.ENDPOINT = target
    constants.HUGGINGFACE_CO_URL_TEMPLATE = target + "/{repo_id}/resolve/{revision}/{filename}"
    return saved


# --------------------------------------------------------------------------- sampled mode
# Parquet files of a Hub dataset read by byte ranges (certify.data.units / .sampled).
# Everything is pinned to a 40-hex commit: the caller resolves the revision once with
# resolve_dataset_revision and passes the commit to every later call.

#: bytes read from the end of a parquet file in one request (footer + length + magic);
#: a longer footer costs one more request (pyarrow guesses the same 64 KiB)
PARQUET_TAIL_BYTES = 64 * 1024


def resolve_dataset_revision(
    dataset_id: str,
    revision: str | None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """The 40-hex commit that ``revision`` (branch, tag, commit; None = main) names.

    Raises :class:`~certify.errors.DataError` for a missing dataset or revision,
    :class:`AuthenticationError` for a gated/rejected token and :class:`HubError` when
    the Hub cannot be reached.
    """

    try:
        info = _hf_api(endpoint, token).dataset_info(dataset_id, revision=revision)
    except CertifyError:
        raise
    except Exception as error:
        raise translate_error(
            error,
            action="resolving the revision of dataset",
            repo_id=dataset_id,
            revision=revision,
            endpoint=endpoint,
            missing=DataError,
        ) from error
    commit = str(info.sha)
    if not _COMMIT_SHA.match(commit):
        raise HubError(f"{_endpoint_of(endpoint)} gave no commit for dataset {dataset_id}")
    return commit


def dataset_parquet_files(
    dataset_id: str,
    commit: str,
    config: str | None,
    split: str,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> list[tuple[str, int]]:
    """(path in repo, size in bytes) of the parquet files of one split, in ``datasets``' order.

    Which files belong to the split is decided by ``datasets`` itself (its data-file
    patterns and the README's ``configs``), at ``commit``. A split that is not stored as
    parquet is refused with a :class:`~certify.errors.DataError` that names the Hub's
    parquet conversion (``--revision refs/convert/parquet``).
    """

    if not _COMMIT_SHA.match(commit):
        raise HubError(f"dataset_parquet_files needs a 40-hex commit, got {commit!r}")
    try:
        import datasets

        saved = _point_datasets_at(endpoint)
        try:
            builder = datasets.load_dataset_builder(
                dataset_id, config, revision=commit, token=token
            )
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
        data_files = builder.config.data_files or {}
        if split not in data_files:
            names = ", ".join(sorted(data_files)) or "none"
            raise DataError(
                f"dataset {dataset_id} has no split {split!r} (splits: {names})",
                hint="pass --split with one of them",
            )
        urls = [str(url) for url in data_files[split]]
    except CertifyError:
        raise
    except ValueError as error:
        first_line = (str(error).strip().splitlines() or ["ValueError"])[0][:300]
        raise DataError(f"cannot open dataset {dataset_id}: {first_line}") from None
    except Exception as error:
        raise translate_error(
            error,
            action="listing the files of dataset",
            repo_id=dataset_id,
            revision=commit,
            endpoint=endpoint,
            missing=DataError,
        ) from error
    marker = f"@{commit}/"
    paths = [url.split(marker, 1)[1] for url in urls if marker in url]
    if len(paths) != len(urls) or not paths:
        raise DataError(
            f"dataset {dataset_id} split {split!r} does not resolve to files at commit {commit}"
        )
    if not all(path.lower().endswith(".parquet") for path in paths):
        raise DataError(
            f"dataset {dataset_id} split {split!r} is not stored as parquet, which sampled "
            "mode needs (row groups are its units)",
            hint="pass --revision refs/convert/parquet (the Hub's parquet conversion) or use "
            "--data-mode exact",
        )
    sizes = _dataset_file_sizes(dataset_id, commit, paths, token=token, endpoint=endpoint)
    return [(path, sizes[path]) for path in paths]


def _dataset_file_sizes(
    dataset_id: str,
    commit: str,
    paths: list[str],
    *,
    token: str | None,
    endpoint: str | None,
) -> dict[str, int]:

    try:
        infos = _hf_api(endpoint, token).get_paths_info(
            dataset_id, paths, revision=commit, repo_type="dataset"
        )
    except Exception as error:
        raise translate_error(
            error,
            action="listing the files of dataset",
            repo_id=dataset_id,
            revision=commit,
            endpoint=endpoint,
            missing=DataError,
        ) from error
    sizes = {str(info.path): int(info.size) for info in infos if hasattr(info, "size")}
    missing = [path for path in paths if path not in sizes]
    if missing:
        raise DataError(f"dataset {dataset_id}@{commit[:12]} has no file {missing[0]}")
    return sizes


_DATASET_FS: dict[tuple[str, str | None], Any] = {}


def _dataset_fs(endpoint: str | None, token: str | None) -> Any:
    """One ``HfFileSystem`` per (endpoint, token) in this process (it caches repo lookups)."""
    from huggingface_hub import HfFileSystem

    key = (_endpoint_of(endpoint), token)
    if key not in _DATASET_FS:
        _DATASET_FS[key] = HfFileSystem(endpoint=key[0], token=token, skip_instance_cache=True)
    return _DATASET_FS[key]


@contextlib.contextmanager
def _dataset_file(
    dataset_id: str,
    commit: str,
    path: str,
    *,
    size: int | None,
    token: str | None,
    endpoint: str | None,
    action: str,
) -> Iterator[Any]:
    """One file of a dataset at ``commit``, open for range reads; failures become
    certify's errors (a missing file a DataError, the rest as :func:`translate_error`)."""
    # cache_type "none": every read is exactly one range request, no read-ahead; a known
    # size spares the listing request that would find it
    options: dict[str, Any] = {"cache_type": "none", "block_size": 1 << 20}
    if size is not None:
        options["size"] = size
    try:
        fs = _dataset_fs(endpoint, token)
        with fs.open(f"datasets/{dataset_id}@{commit}/{path}", "rb", **options) as handle:
            yield handle
    except CertifyError:
        raise
    except FileNotFoundError as error:
        raise DataError(
            f"{dataset_id}@{commit[:12]} has no file {path} on {_endpoint_of(endpoint)} "
            f"({str(error).splitlines()[0][:200]})",
            hint="check the dataset id, the revision and the token",
        ) from None
    except Exception as error:
        raise translate_error(
            error,
            action=action,
            repo_id=dataset_id,
            revision=commit,
            endpoint=endpoint,
            missing=DataError,
        ) from error


def read_dataset_ranges(
    dataset_id: str,
    commit: str,
    path: str,
    ranges: list[tuple[int, int]],
    *,
    size: int | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> list[bytes]:
    """Bytes [start, stop) of one file of a dataset at ``commit``, one HTTP range read each.

    Negative starts count from the end of the file (``(-8, 0)`` is the last 8 bytes;
    a stop of 0 with a negative start means the end). Reads go through huggingface_hub's
    ``HfFileSystem`` with ``cache_type="none"``, so exactly the asked bytes are
    requested (no read-ahead). ``size`` (the file's, when known) saves one request.
    """

    if not _COMMIT_SHA.match(commit):
        raise HubError(f"read_dataset_ranges needs a 40-hex commit, got {commit!r}")
    out: list[bytes] = []
    with _dataset_file(
        dataset_id,
        commit,
        path,
        size=size,
        token=token,
        endpoint=endpoint,
        action="reading dataset",
    ) as handle:
        size = int(handle.size)
        for start, stop in ranges:
            begin = start + size if start < 0 else start
            end = size if (start < 0 and stop == 0) else (stop + size if stop < 0 else stop)
            if not 0 <= begin <= end <= size:
                raise DataError(
                    f"{dataset_id}/{path} has {size} bytes; [{begin}, {end}) does not exist",
                    hint="the file changed since its units were listed",
                )
            handle.seek(begin)
            data = handle.read(end - begin) if end > begin else b""
            if len(data) != end - begin:
                raise HubError(
                    f"{_endpoint_of(endpoint)} sent {len(data)} of {end - begin} bytes of "
                    f"{dataset_id}/{path}",
                    hint="retry later",
                )
            out.append(data)
    return out


def read_parquet_footer(
    dataset_id: str,
    commit: str,
    path: str,
    *,
    size: int | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> tuple[int, bytes]:
    """(file size, the file's tail holding the whole footer) of a parquet file on the Hub.

    One range read of the last :data:`PARQUET_TAIL_BYTES` bytes, and a second one only
    when the footer is longer. The returned bytes end with ``<footer><len:4><PAR1>``.
    """

    with _dataset_file(
        dataset_id,
        commit,
        path,
        size=size,
        token=token,
        endpoint=endpoint,
        action="reading the parquet footer of dataset",
    ) as handle:
        size = int(handle.size)
        take = min(size, PARQUET_TAIL_BYTES)
        handle.seek(size - take)
        tail = handle.read(take)
        if size < 12 or tail[-4:] != b"PAR1":
            raise DataError(f"{dataset_id}/{path} is not a parquet file (no PAR1 footer)")
        footer_bytes = int.from_bytes(tail[-8:-4], "little")
        needed = footer_bytes + 8
        if needed > size - 4:
            raise DataError(f"{dataset_id}/{path}: footer length {footer_bytes} is invalid")
        if needed > len(tail):
            handle.seek(size - needed)
            tail = handle.read(needed - len(tail)) + tail
    return size, tail
