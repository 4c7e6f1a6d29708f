"""Files: atomic writes, content hashes, safe relative paths and the run-folder names.

Every file certify writes appears whole or not at all: it is written to
``NAME.tmp-<pid>`` in the same folder, fsynced, then renamed over ``NAME`` with
``os.replace`` (atomic on POSIX and Windows), and the folder is fsynced so the rename
survives a crash. :func:`sweep_temp_files` removes what an earlier crash left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from certify.errors import VerificationError

__all__ = [
    "ARTIFACT_NAME",
    "CARD_NAME",
    "CERTIFICATE_NAME",
    "ENVELOPE_NAME",
    "LOG_NAME",
    "MODEL_SIGNATURE_NAME",
    "PLOT_NAME",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "RISK_NAME",
    "STATE_DIR",
    "TEMP_MARK",
    "atomic_path",
    "copy_atomic",
    "file_digest",
    "file_sha256",
    "fsync_dir",
    "public_name",
    "published_files",
    "safe_relative_path",
    "sweep_temp_files",
    "temp_path",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

# --------------------------------------------------------------------------- run-folder names

#: the published artifact
ARTIFACT_NAME = "model.certz"
#: the certificate (RFC 8785 canonical JSON) and its DSSE envelope
CERTIFICATE_NAME = "certificate.json"
ENVELOPE_NAME = "certificate.dsse.json"
#: the OpenSSF model-signing bundle over the whole folder (written last)
MODEL_SIGNATURE_NAME = "model.sig"
#: the model card and its plot
CARD_NAME = "README.md"
PLOT_NAME = "bound.png"
#: the measured risk (``certify bound``'s input)
RISK_NAME = "risk.json"
#: one JSON object per line: stage start/done/reused, notes
LOG_NAME = "run.log"
#: stage manifests, checkpoints, search candidates (never published)
STATE_DIR = ".certify"
#: the signing key pair's file names
PRIVATE_KEY_NAME = "certify-signing-key.pem"
PUBLIC_KEY_NAME = "certify-signing-key.pub.pem"

#: what marks a temporary file (``NAME.tmp-<pid>``); never published, swept after a crash
TEMP_MARK = ".tmp-"
_HASH_BLOCK_BYTES = 1 << 20
#: files larger than this are never PEM keys (a key is a few hundred bytes)
_KEY_SCAN_BYTES = 64 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------- atomic writes


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """``NAME.tmp-<pid>`` beside ``path`` (``suffix`` keeps e.g. an extension a writer needs)."""
    target = Path(path)
    return target.with_name(f"{target.name}{TEMP_MARK}{os.getpid()}{suffix}")


def fsync_dir(directory: str | Path) -> None:
    """Flush a folder's entries to disk (so a rename survives a crash); best effort."""
    with contextlib.suppress(OSError):  # not every platform lets us fsync a folder
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to it.

    For writers that want a file name (safetensors, matplotlib, a compressor). On any
    error the temporary file (or folder) is removed and ``path`` is left untouched.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "out.txt") as temp:
    ...     _ = temp.write_text("done")
    >>> (folder / "out.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('done', ['out.txt'])
    """
    target = Path(path)
    temp = temp_path(target, suffix)
    try:
        yield temp
        if temp.is_file():
            _fsync_file(temp)
        os.replace(temp, target)
        fsync_dir(target.parent)
    finally:
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically.

    ``mode`` (e.g. ``0o600`` for a private key) is the file's permission from the
    moment it is created, so the content is never readable with wider permissions.
    Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temp:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(temp, flags, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 (newlines untouched) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON (finite numbers only) plus a newline, atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` atomically."""
    with atomic_path(target) as temp:
        shutil.copyfile(source, temp)


def sweep_temp_files(directory: str | Path) -> list[Path]:
    """Remove leftover ``*.tmp-<pid>*`` files and folders under ``directory`` (an old crash)."""
    root = Path(directory)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in sorted(root.rglob(f"*{TEMP_MARK}*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# --------------------------------------------------------------------------- hashes


def file_digest(path: str | Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    size_bytes = 0
    with open(path, "rb") as handle:
        while piece := handle.read(_HASH_BLOCK_BYTES):
            digest.update(piece)
            size_bytes += len(piece)
    return digest.hexdigest(), size_bytes


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return file_digest(path)[0]


# --------------------------------------------------------------------------- paths


def safe_relative_path(root: str | Path, name: Any) -> Path:
    """``root / name`` for a relative '/'-separated ``name`` that stays inside ``root``.

    Rejects absolute paths, '..', hidden names, backslashes, and links to anything
    but a regular file; raises VerificationError naming the problem.

    >>> safe_relative_path("/runs/a", "model.certz").as_posix()
    '/runs/a/model.certz'
    """
    if not isinstance(name, str) or not name:
        raise VerificationError("is not a non-empty string", field="artifact.path")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ":" in name:
        raise VerificationError(
            f"{name!r} is absolute or not a '/'-separated relative path", field="path"
        )
    if any(not _SAFE_NAME.match(part) for part in parts):
        raise VerificationError(
            f"{name!r} leaves the run folder or names a hidden file ('..', '.', '.name')",
            field="path",
        )
    path = Path(root).joinpath(*parts)
    # Links are followed on purpose: the Hub's download cache stores every file as a
    # link into its blob store. What is trusted is the content hash, not the location;
    # only regular files are read, so a link cannot make verify read a device or a pipe.
    if path.is_symlink() and path.exists() and not path.resolve().is_file():
        raise VerificationError(f"{name!r} is a link to something other than a file", field="path")
    return path


# --------------------------------------------------------------------------- what is published


def _looks_like_private_key(path: Path) -> bool:
    """True for PEM files holding a private key (never published, whatever their name)."""
    if path.stat().st_size > _KEY_SCAN_BYTES:
        return False
    with path.open("rb") as handle:
        head = handle.read(_KEY_SCAN_BYTES)
    return b"PRIVATE KEY-----" in head


def published_files(run_dir: str | Path) -> list[Path]:
    """The files of a run folder that are published (pushed and covered by model.sig), by name.

    Top-level regular files only (subfolders such as the ``.certify`` state or token
    shards stay local), without hidden files, half-written temporaries (``*.tmp-*``),
    ``run.log`` (appended by every rerun and push, and full of local paths) and any
    PEM private key. ``push`` uploads exactly these, and ``model.sig`` signs exactly
    these (itself aside), so a Hub download verifies with model-signing's own CLI.
    """
    selected = []
    for path in sorted(Path(run_dir).iterdir()):
        name = path.name
        if not path.is_file() or name.startswith(".") or TEMP_MARK in name or name == LOG_NAME:
            continue
        if _looks_like_private_key(path):
            continue
        selected.append(path)
    return selected


def public_name(source: str) -> str:
    """How a source is named in published files: a Hub id as given, a local path by its
    last component only (no home folder, no machine layout leaks into a certificate).

    >>> public_name("/home/me/corpora/notes"), public_name("org/dataset")
    ('notes', 'org/dataset')
    """
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute() or source.startswith((".", "~")):
        return path.resolve().name or source
    return source
