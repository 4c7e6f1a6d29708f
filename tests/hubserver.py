"""A local stand-in for the Hugging Face Hub, for tests only.

It answers exactly the requests huggingface_hub 2.x makes for the calls certify uses
(see ../shared/HUB_API.md): whoami, repo creation, README validation, repo info with
siblings and card data, tree listing, refs and branches, preupload, NDJSON commits
(atomic: all operations or none, with the parentCommit check), the plain LFS
batch/upload/verify protocol, and file downloads (resolve, HEAD and GET). Repos live
on disk under a temporary folder:

    <root>/<type>s/<ns>/<name>/meta.json          owner, privacy, branches -> commit
    <root>/<type>s/<ns>/<name>/commits/<oid>.json parent, message, {path: file entry}
    <root>/objects/<sha256>                       file contents (shared, content-addressed)

Tokens are a map token -> user name; every known token may write to its own
namespace. Unknown tokens get 401, writes into another user's namespace 403.
``fail(...)`` injects server errors for the fault tests; ``requests`` logs every
request (method, path) so tests can assert that nothing was sent. File downloads honour
HTTP ``Range`` (206 with Content-Range, as huggingface_hub's ``HfFileSystem`` needs for
range reads) and ``served_ranges`` logs every byte range of a file body sent, so a test
can assert which parts of a file were transferred; ``paths-info`` answers file sizes.

Uploads go inline ("regular") unless ``lfs_threshold_bytes`` is set, in which case
files at least that large are labelled "lfs": the client must then have Xet disabled
(``huggingface_hub.constants.HF_HUB_DISABLE_XET = True`` or HF_HUB_DISABLE_XET=1 before
import), because this server does not speak Xet.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

COMMIT_OID = re.compile(r"^[0-9a-f]{40}$")
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
INITIAL_GITATTRIBUTES = b"*.certz filter=lfs diff=lfs merge=lfs -text\n"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode()


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML block at the top of a README (None when there is none)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else {}


class HubHTTPError(Exception):
    """An HTTP error answer (status, message, X-Error-Code)."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.extra = extra


@dataclass
class Fault:
    """Answer ``status`` to requests whose method and path match (``times`` None = always)."""

    path_contains: str
    method: str | None = None
    status: int = 500
    times: int | None = 1
    hits: int = 0


@dataclass
class HubServer:
    """The stand-in Hub. ``start()`` binds 127.0.0.1 on an ephemeral port."""

    root: Path
    tokens: dict[str, str] = field(default_factory=dict)
    lfs_threshold_bytes: int | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    #: every file body sent by resolve GETs: (repo_id, path, start, stop) byte ranges
    served_ranges: list[tuple[str, str, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "objects").mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._uploads: dict[str, int] = {}  # LFS oid -> expected size (batch answered)

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token(self) -> str:
        """The first configured token (the default user's write token)."""
        return next(iter(self.tokens))

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # ------------------------------------------------------------------ test helpers

    def fail(
        self,
        path_contains: str,
        *,
        method: str | None = None,
        status: int = 500,
        times: int | None = 1,
    ) -> Fault:
        """Make matching requests fail with ``status`` (``times=None``: every time)."""
        fault = Fault(path_contains, method, status, times)
        self.faults.append(fault)
        return fault

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        """The on-disk folder of a repo (exists once the repo was created)."""
        return self.root / f"{repo_type}s" / repo_id

    def create_repo(
        self,
        repo_id: str,
        *,
        owner: str | None = None,
        private: bool = False,
        repo_type: str = "model",
    ) -> None:
        """Create a repo directly (e.g. one owned by someone else)."""
        with self._lock:
            self._create(repo_type, repo_id, owner or repo_id.split("/")[0], private)

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str | None:
        """Commit oid of ``branch`` (None if the repo or branch does not exist)."""
        meta = self._meta(repo_type, repo_id)
        return None if meta is None else meta["branches"].get(branch)

    def commit_log(
        self, repo_id: str, branch: str = "main", repo_type: str = "model"
    ) -> list[dict[str, Any]]:
        """Commits of ``branch``, newest first (each with its ``oid``)."""
        oid = self.head(repo_id, branch, repo_type)
        log = []
        while oid:
            commit = self._commit(repo_type, repo_id, oid)
            log.append({"oid": oid, **commit})
            oid = commit["parent"]
        return log

    def files(
        self, repo_id: str, revision: str = "main", repo_type: str = "model"
    ) -> dict[str, bytes]:
        """Every file of ``revision`` with its content."""
        oid = self._resolve(repo_type, repo_id, revision)
        entries = self._commit(repo_type, repo_id, oid)["files"]
        return {path: self._object(entry["sha256"]) for path, entry in sorted(entries.items())}

    def commit_files(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        message: str = "seed",
        repo_type: str = "model",
    ) -> str:
        """Commit ``files`` directly (test setup), returning the new commit oid."""
        with self._lock:
            meta = self._meta(repo_type, repo_id)
            if meta is None:
                raise KeyError(repo_id)
            parent = meta["branches"].get(branch) or meta["branches"]["main"]
            entries = dict(self._commit(repo_type, repo_id, parent)["files"])
            for path, content in files.items():
                entries[path] = self._store(content, lfs=False)
            return self._write_commit(repo_type, repo_id, branch, parent, message, entries)

    # ------------------------------------------------------------------ storage

    def _repo_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def _meta(self, repo_type: str, repo_id: str) -> dict[str, Any] | None:
        path = self._repo_path(repo_type, repo_id) / "meta.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def _write_json(self, path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _commit(self, repo_type: str, repo_id: str, oid: str) -> dict[str, Any]:
        path = self._repo_path(repo_type, repo_id) / "commits" / f"{oid}.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def _object(self, sha256: str) -> bytes:
        return (self.root / "objects" / sha256).read_bytes()

    def _store(self, content: bytes, *, lfs: bool) -> dict[str, Any]:
        sha256 = hashlib.sha256(content).hexdigest()
        target = self.root / "objects" / sha256
        if not target.exists():
            tmp = target.with_name(f"{sha256}.tmp-{threading.get_ident()}")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        return self._entry(sha256, len(content), lfs=lfs, content=content)

    def _entry(
        self, sha256: str, size: int, *, lfs: bool, content: bytes | None = None
    ) -> dict[str, Any]:
        if lfs:
            oid = git_blob_oid(lfs_pointer(sha256, size))
        else:
            oid = git_blob_oid(content if content is not None else self._object(sha256))
        return {"sha256": sha256, "size": size, "lfs": lfs, "oid": oid}

    def _new_oid(self, payload: Any) -> str:
        self._counter += 1
        raw = json.dumps([payload, self._counter, time.time_ns()], sort_keys=True).encode()
        return hashlib.sha1(raw).hexdigest()

    def _write_commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        parent: str | None,
        message: str,
        entries: dict[str, Any],
    ) -> str:
        commit = {"parent": parent, "message": message, "files": entries, "date": time.time()}
        oid = self._new_oid(commit)
        self._write_json(self._repo_path(repo_type, repo_id) / "commits" / f"{oid}.json", commit)
        meta = self._meta(repo_type, repo_id)
        assert meta is not None
        meta["branches"][branch] = oid
        # The branch moves only after the commit object is fully on disk: all or nothing.
        self._write_json(self._repo_path(repo_type, repo_id) / "meta.json", meta)
        return oid

    def _create(self, repo_type: str, repo_id: str, owner: str, private: bool) -> None:
        meta = {"owner": owner, "private": private, "branches": {}, "created": time.time()}
        self._write_json(self._repo_path(repo_type, repo_id) / "meta.json", meta)
        entries = {".gitattributes": self._store(INITIAL_GITATTRIBUTES, lfs=False)}
        self._write_commit(repo_type, repo_id, "main", None, "initial commit", entries)

    def _resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        meta = self._meta(repo_type, repo_id)
        if meta is None:
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        if revision in meta["branches"]:
            return meta["branches"][revision]  # type: ignore[no-any-return]
        if (
            COMMIT_OID.match(revision)
            and (self._repo_path(repo_type, repo_id) / "commits" / f"{revision}.json").exists()
        ):
            return revision
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _user(self) -> str | None:
        """The caller's user name (None without a token); 401 for an unknown token."""
        auth = self.headers.get("authorization") or ""
        if not auth.lower().startswith("bearer "):
            return None
        token = auth.split(" ", 1)[1].strip()
        if token not in self.hub.tokens:
            raise HubHTTPError(401, INVALID_CREDENTIALS)
        return self.hub.tokens[token]

    def _can_read(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self.hub._meta(repo_type, repo_id)
        user = self._user()
        if meta is None or (meta["private"] and user != meta["owner"]):
            raise HubHTTPError(404, "Repository not found", "RepoNotFound")
        return meta

    def _can_write(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        user = self._user()
        if user is None:
            raise HubHTTPError(401, "You must be authenticated to write")
        meta = self._can_read(repo_type, repo_id)
        if meta["owner"] != user:
            raise HubHTTPError(403, f"You don't have the rights to write to {repo_id}")
        return meta

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append((method, url.path))
        head = method == "HEAD"
        try:
            for fault in self.hub.faults:
                if (
                    fault.path_contains in url.path
                    and fault.method in (None, method)
                    and (fault.times is None or fault.hits < fault.times)
                ):
                    fault.hits += 1
                    self._body()
                    raise HubHTTPError(fault.status, "injected server error")
            self._route(method, url.path, parse_qs(url.query), head)
        except HubHTTPError as error:
            headers = {"X-Error-Message": error.message}
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
            if "commit" in error.extra:
                headers["X-Repo-Commit"] = str(error.extra["commit"])
            body = {"error": error.message, **error.extra}
            self._send(error.status, json.dumps(body).encode(), headers, head=head)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ------------------------------------------------------------------ routes

    def _route(self, method: str, path: str, query: dict[str, list[str]], head: bool) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] == ["api", "whoami-v2"]:
            return self._whoami()
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
            return self._api_repo(method, repo_type, repo_id, rest, query)
        if parts[0] == "lfs-upload" and method == "PUT":
            return self._lfs_put(parts[1])
        if parts[0] == "lfs-verify" and method == "POST":
            return self._lfs_verify(parts[1])
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
        if (
            len(parts) >= 2
            and parts[1].endswith(".git")
            and parts[2:] == ["info", "lfs", "objects", "batch"]
        ):
            return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}")
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(
                repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head
            )
        raise HubHTTPError(404, f"no route for {method} {path}")

    def _whoami(self) -> None:
        user = self._user()
        if user is None:
            raise HubHTTPError(401, INVALID_CREDENTIALS)
        self._json(
            200,
            {
                "type": "user",
                "name": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"role": "write"}},
            },
        )

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        user = self._user()
        if user is None:
            raise HubHTTPError(401, "You must be authenticated to create a repo")
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        if namespace != user:
            raise HubHTTPError(403, f"You don't have the rights to create a repo under {namespace}")
        private = payload.get("private") or payload.get("visibility") == "private"
        with self.hub._lock:
            if self.hub._meta(repo_type, repo_id) is not None:
                raise HubHTTPError(409, "You already created this model repo", url=url)
            self.hub._create(repo_type, repo_id, user, bool(private))
        self._json(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        try:
            front_matter(payload.get("content", ""))
        except yaml.YAMLError as error:
            message = str(error).splitlines()[0]
            self._json(400, {"errors": [{"message": message}], "warnings": []})
            return
        self._json(200, {"errors": [], "warnings": []})

    def _api_repo(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, list[str]],
    ) -> None:
        if method == "GET" and (not rest or rest[0] == "revision"):
            return self._info(repo_type, repo_id, rest[1] if len(rest) > 1 else "main")
        if method == "GET" and rest[0] == "tree":
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), recursive)
        if method == "GET" and rest[0] == "refs":
            meta = self._can_read(repo_type, repo_id)
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                for name, oid in sorted(meta["branches"].items())
                if not name.startswith("refs/pr/")
            ]
            return self._json(200, {"branches": branches, "converts": [], "tags": []})
        if method == "POST" and rest[0] == "paths-info":
            return self._paths_info(repo_type, repo_id, "/".join(rest[1:]))
        if method == "POST" and rest[0] == "branch":
            return self._branch(repo_type, repo_id, "/".join(rest[1:]))
        if method == "POST" and rest[0] == "preupload":
            return self._preupload(repo_type, repo_id, rest[1])
        if method == "POST" and rest[0] == "commit":
            return self._commit(repo_type, repo_id, rest[1], query)
        raise HubHTTPError(404, f"no route for {method} {repo_id}/{'/'.join(rest)}")

    def _info(self, repo_type: str, repo_id: str, revision: str) -> None:
        meta = self._can_read(repo_type, repo_id)
        oid = self.hub._resolve(repo_type, repo_id, revision)
        commit = self.hub._commit(repo_type, repo_id, oid)
        siblings = [
            {
                "rfilename": path,
                "size": entry["size"],
                "blobId": entry["oid"],
                **(
                    {
                        "lfs": {
                            "size": entry["size"],
                            "sha256": entry["sha256"],
                            "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
                        }
                    }
                    if entry["lfs"]
                    else {}
                ),
            }
            for path, entry in sorted(commit["files"].items())
        ]
        info: dict[str, Any] = {
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": oid,
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit["date"])),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(meta["created"])),
            "siblings": siblings,
        }
        readme = commit["files"].get("README.md")
        if readme is not None:
            card = front_matter(self.hub._object(readme["sha256"]).decode("utf-8"))
            if card is not None:
                info["cardData"] = card
                info["tags"] = list(card.get("tags") or [])
                if "model-index" in card:
                    info["model-index"] = card["model-index"]
        self._json(200, info)

    def _tree(
        self, repo_type: str, repo_id: str, revision: str, prefix: str, recursive: bool
    ) -> None:
        self._can_read(repo_type, repo_id)
        oid = self.hub._resolve(repo_type, repo_id, revision)
        files = self.hub._commit(repo_type, repo_id, oid)["files"]
        base = prefix.strip("/")
        out: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, entry in sorted(files.items()):
            if base and not path.startswith(base + "/"):
                continue
            relative = path[len(base) + 1 :] if base else path
            if "/" in relative and not recursive:
                folders.add((base + "/" if base else "") + relative.split("/")[0])
                continue
            if recursive:
                pieces = relative.split("/")[:-1]
                for depth in range(1, len(pieces) + 1):
                    folders.add((base + "/" if base else "") + "/".join(pieces[:depth]))
            item: dict[str, Any] = {
                "type": "file",
                "path": path,
                "size": entry["size"],
                "oid": entry["oid"],
            }
            if entry["lfs"]:
                item["lfs"] = {
                    "oid": entry["sha256"],
                    "size": entry["size"],
                    "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
                }
            out.append(item)
        if base and not out and not folders:
            raise HubHTTPError(404, f"{base} does not exist", "EntryNotFound")
        out.extend(
            {"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
            for folder in sorted(folders)
        )
        self._json(200, out)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        """POST paths-info: entries of the asked paths (form or JSON body; absent ones left out)."""
        raw = self._body()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            wanted = [str(path) for path in json.loads(raw or b"{}").get("paths", [])]
        else:
            wanted = parse_qs(raw.decode("utf-8")).get("paths", [])
        self._can_read(repo_type, repo_id)
        oid = self.hub._resolve(repo_type, repo_id, revision)
        files = self.hub._commit(repo_type, repo_id, oid)["files"]
        out: list[dict[str, Any]] = []
        for path in wanted:
            path = path.strip("/")
            entry = files.get(path)
            if entry is not None:
                out.append(
                    {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
                )
            elif any(name.startswith(path + "/") for name in files):
                out.append(
                    {
                        "type": "directory",
                        "path": path,
                        "oid": hashlib.sha1(path.encode()).hexdigest(),
                    }
                )
        self._json(200, out)

    def _branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        payload = json.loads(self._body() or b"{}")
        with self.hub._lock:
            meta = self._can_write(repo_type, repo_id)
            if branch in meta["branches"]:
                raise HubHTTPError(409, f"Branch {branch} already exists")
            start = self.hub._resolve(repo_type, repo_id, payload.get("startingPoint") or "main")
            meta["branches"][branch] = start
            self.hub._write_json(self.hub._repo_path(repo_type, repo_id) / "meta.json", meta)
        self._json(200, {})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        payload = json.loads(self._body() or b"{}")
        self._can_write(repo_type, repo_id)
        oid = self.hub._resolve(repo_type, repo_id, revision)
        current = self.hub._commit(repo_type, repo_id, oid)["files"]
        threshold = self.hub.lfs_threshold_bytes
        answers = []
        for item in payload.get("files", []):
            lfs = threshold is not None and int(item["size"]) > 0 and int(item["size"]) >= threshold
            existing = current.get(item["path"])
            remote_oid = None
            if existing is not None and existing["lfs"] == lfs:
                remote_oid = existing["sha256"] if lfs else existing["oid"]
            answers.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": remote_oid,
                }
            )
        self._json(200, {"files": answers, "commitOid": oid})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        payload = json.loads(self._body() or b"{}")
        self._can_write(repo_type, repo_id)
        objects = []
        for item in payload.get("objects", []):
            oid, size = str(item["oid"]), int(item["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not (self.hub.root / "objects" / oid).exists():
                self.hub._uploads[oid] = size
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/lfs-upload/{oid}", "expires_in": 3600},
                    "verify": {"href": f"{self.hub.endpoint}/lfs-verify/{oid}", "expires_in": 3600},
                }
            objects.append(entry)
        self._json(
            200,
            {"transfer": "basic", "objects": objects},
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, oid: str) -> None:
        content = self._body()
        if oid not in self.hub._uploads:
            raise HubHTTPError(403, "no upload was announced for this object")
        if hashlib.sha256(content).hexdigest() != oid or len(content) != self.hub._uploads[oid]:
            raise HubHTTPError(400, "uploaded content does not match its oid and size")
        self.hub._store(content, lfs=True)
        self._send(200, b"")

    def _lfs_verify(self, oid: str) -> None:
        payload = json.loads(self._body() or b"{}")
        self._user()
        target = self.hub.root / "objects" / oid
        if not target.exists() or target.stat().st_size != int(payload.get("size", -1)):
            raise HubHTTPError(404, f"object {oid} was not uploaded")
        self._json(200, {"oid": oid, "size": payload.get("size")})

    def _commit(
        self, repo_type: str, repo_id: str, revision: str, query: dict[str, list[str]]
    ) -> None:
        raw = self._body()
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        create_pr = query.get("create_pr", ["0"])[0] == "1"
        with self.hub._lock:
            meta = self._can_write(repo_type, repo_id)
            parent = self.hub._resolve(repo_type, repo_id, revision)
            if COMMIT_OID.match(revision) and revision not in meta["branches"]:
                raise HubHTTPError(400, "commits must target a branch, not a commit id")
            header = lines[0]["value"] if lines and lines[0].get("key") == "header" else None
            if header is None:
                raise HubHTTPError(400, "the first line of a commit must be its header")
            expected = header.get("parentCommit")
            if expected is not None and expected != parent:
                raise HubHTTPError(412, f"parentCommit {expected} is not the head of {revision}")
            entries = dict(self.hub._commit(repo_type, repo_id, parent)["files"])
            # Validate every operation before writing anything: all or nothing.
            staged: list[tuple[str, dict[str, Any] | None, bytes | None]] = []
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = str(value.get("path", "")).strip("/")
                if not path or ".." in path.split("/"):
                    raise HubHTTPError(400, f"invalid path {path!r}")
                if key == "file":
                    content = base64.b64decode(value["content"])
                    staged.append((path, None, content))
                elif key == "lfsFile":
                    oid = value["oid"]
                    target = self.hub.root / "objects" / oid
                    if not target.exists():
                        raise HubHTTPError(400, f"LFS object {oid} of {path} was never uploaded")
                    entry = self.hub._entry(oid, target.stat().st_size, lfs=True)
                    staged.append((path, entry, None))
                elif key in ("deletedFile", "deletedFolder"):
                    if key == "deletedFile" and path not in entries:
                        raise HubHTTPError(
                            404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                        )
                    staged.append((path, None, None))
                else:
                    raise HubHTTPError(400, f"unsupported commit operation {key!r}")
            for path, entry, content in staged:
                if content is not None:
                    entries[path] = self.hub._store(content, lfs=False)
                elif entry is not None:
                    entries[path] = entry
                else:
                    for name in [p for p in entries if p == path or p.startswith(path + "/")]:
                        del entries[name]
            message = header.get("summary") or ""
            pr_url = None
            branch = revision
            if create_pr:
                number = 1 + sum(1 for name in meta["branches"] if name.startswith("refs/pr/"))
                branch = f"refs/pr/{number}"
                pr_url = (
                    f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}/discussions/{number}"
                )
            oid = self.hub._write_commit(repo_type, repo_id, branch, parent, message, entries)
        self._json(
            200,
            {
                "commitUrl": f"{self.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": pr_url,
                "success": True,
            },
        )

    def _resolve_file(
        self, repo_type: str, repo_id: str, revision: str, path: str, head: bool
    ) -> None:
        self._can_read(repo_type, repo_id)
        oid = self.hub._resolve(repo_type, repo_id, revision)
        entry = self.hub._commit(repo_type, repo_id, oid)["files"].get(path)
        if entry is None:
            raise HubHTTPError(404, "Entry not found", "EntryNotFound", commit=oid)
        content = self.hub._object(entry["sha256"])
        headers = {"X-Repo-Commit": oid, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(entry["size"])
        status, start, stop = 200, 0, len(content)
        wanted = _byte_range(self.headers.get("Range"), len(content))
        if wanted is not None:
            start, stop = wanted
            if start >= stop:
                headers["Content-Range"] = f"bytes */{len(content)}"
                self._send(416, b"", headers, head=head)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(content)}"
        if not head:
            self.hub.served_ranges.append((repo_id, path, start, stop))
        self._send(
            status, content[start:stop], headers, content_type="application/octet-stream", head=head
        )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, stop) of one ``Range: bytes=a-b`` / ``a-`` / ``-n`` header (None: whole file)."""
    if not header or not header.strip().startswith("bytes="):
        return None
    spec = header.strip()[len("bytes=") :].split(",")[0].strip()
    first, _, last = spec.partition("-")
    if not first:  # suffix: the last n bytes
        count = int(last)
        return max(0, size - count), size
    start = int(first)
    stop = size if not last else min(size, int(last) + 1)
    return (start, stop) if start < size else (size, size)
