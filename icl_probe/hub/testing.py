"""A local Hugging Face Hub stand-in for tests: a Hub-cache folder served over HTTP on 127.0.0.1.

It serves the layout the mini-suite writes (``<root>/models--<org>--<name>/refs/<branch>`` holding
a 40-hex commit, ``snapshots/<commit>/<files>``) through the endpoints huggingface_hub calls:

- ``GET  /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``  (``model_info``)
- ``GET  /api/models/{repo}/refs``                                      (``list_repo_refs``)
- ``GET  /api/models/{repo}/tree/{rev}[/{path}]``                       (``list_repo_tree``)
- ``POST /api/models/{repo}/paths-info/{rev}``                          (``get_paths_info``)
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``                             (``hf_hub_download``)

with the headers the client reads (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` and
``X-Linked-Size`` for LFS files, ``Content-Length``, ``Accept-Ranges``/``Content-Range`` for
resumed downloads) and the ``X-Error-Code`` values it maps to errors (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``).

Faults are injected per file name and counted down (``stand_in.inject("5xx", "model.safetensors",
times=2)``): ``5xx`` (503 on HEAD and GET), ``5xx_get`` (503 on GET only), ``drop`` (the connection
closes after half the body), ``truncate`` (a complete response that is half the file), ``corrupt``
(right size, one byte flipped), ``429`` (HTTP 429 with ``Retry-After: <retry_after_s>``, on HEAD and
GET, as the Hub's per-IP rate limit answers), ``stall`` (half the body, then no byte for
``stall_s`` seconds before the connection closes). ``gated`` repos answer 401 without an accepted token and 403 with a
wrong one. Every request is logged in ``stand_in.requests``; past ``max_requests`` the server
answers 500 and ``__exit__`` raises, so a client loop cannot run unbounded. The server stops on
leaving the ``with`` block, or after ``lifetime_s`` whatever happens.

    with serve_hub(cache_root) as hub:
        HfApi(endpoint=hub.endpoint).list_repo_refs("mini/pythia-s")
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".gguf")
FAULT_KINDS = ("5xx", "5xx_get", "429", "drop", "stall", "truncate", "corrupt")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git object id (sha1 of ``blob <size>\\0`` + content) the Hub reports for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass
class Fault:
    kind: str
    pattern: str  # fnmatch pattern on the file path in the repo
    times: int
    revision: str | None = None  # only for this revision (branch or commit); None: any


@dataclass
class HubStandIn:
    """State of a running stand-in: its endpoint, request log and pending faults."""

    root: Path
    endpoint: str = ""
    gated: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    max_requests: int = 5000
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    faults: list[Fault] = field(default_factory=list)
    range_requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header)
    request_times: list[float] = field(default_factory=list)  # time.monotonic() of each logged request
    retry_after_s: int = 1  # the Retry-After of an injected 429
    stall_s: float = 30.0  # how long an injected stall sends nothing
    overflow: bool = False
    bandwidth_bps: float | None = None  # bytes/s of the whole link (file bodies), None: unthrottled
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _link_free_at: float = 0.0  # monotonic time at which the throttled link is next idle
    _hash_cache: dict = field(default_factory=dict)

    def inject(self, kind: str, pattern: str = "*", times: int = 1, revision: str | None = None) -> None:
        """Make the next ``times`` matching downloads fail with ``kind`` (see module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self.faults.append(Fault(kind, pattern, times, revision))

    def pace(self, n: int) -> None:
        """Block until ``n`` more bytes have had their time on the throttled link (the end of their
        slot). The link is shared: concurrent downloads queue their chunks on one clock, so
        together they get ``bandwidth_bps``."""
        if not self.bandwidth_bps:
            return
        with self._lock:
            now = time.monotonic()
            end = max(now, self._link_free_at) + n / self.bandwidth_bps
            self._link_free_at = end
        time.sleep(max(0.0, end - now))

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Number of logged requests with this method whose path contains ``contains``."""
        return sum(1 for m, p, _ in self.requests if (method is None or m == method) and contains in p)

    # --- repository access ------------------------------------------------------------------

    def repo_dir(self, repo_id: str) -> Path | None:
        org, _, name = repo_id.partition("/")
        d = self.root / f"models--{org}--{name}"
        return d if "/" in repo_id and d.is_dir() else None

    def branches(self, repo_id: str) -> dict[str, str]:
        refs = self.repo_dir(repo_id) / "refs"
        if not refs.is_dir():
            return {}
        return {p.name: p.read_text().strip() for p in sorted(refs.iterdir()) if p.is_file()}

    def commit_of(self, repo_id: str, revision: str) -> str | None:
        if _COMMIT_RE.fullmatch(revision) and (self.repo_dir(repo_id) / "snapshots" / revision).is_dir():
            return revision
        commit = self.branches(repo_id).get(revision)
        if commit and (self.repo_dir(repo_id) / "snapshots" / commit).is_dir():
            return commit
        return None

    def files(self, repo_id: str, commit: str) -> dict[str, Path]:
        snap = self.repo_dir(repo_id) / "snapshots" / commit
        out = {}
        for p in sorted(snap.rglob("*")):
            if p.is_file():
                out[p.relative_to(snap).as_posix()] = p
        return out

    def file_meta(self, path: Path) -> dict:
        """size, git oid and (LFS files) sha256 of a served file, computed once."""
        real = os.path.realpath(path)
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns)
        with self._lock:
            meta = self._hash_cache.get(key)
        if meta is None:
            data = Path(real).read_bytes()
            meta = {"size": len(data), "oid": git_blob_oid(data), "sha256": hashlib.sha256(data).hexdigest()}
            with self._lock:
                self._hash_cache[key] = meta
        return meta

    def take_fault(self, kinds: tuple[str, ...], path: str, revision: str, commit: str) -> str | None:
        with self._lock:
            for f in self.faults:
                if (
                    f.times > 0
                    and f.kind in kinds
                    and fnmatch.fnmatch(path, f.pattern)
                    and (f.revision is None or f.revision in (revision, commit))
                ):
                    f.times -= 1
                    return f.kind
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubStandIn/1"
    hub: HubStandIn  # set on the subclass made per server

    def log_message(self, format, *args):  # noqa: A002 - silence stderr logging
        pass

    # --- plumbing ---------------------------------------------------------------------------

    def _log(self, status: int) -> None:
        with self.hub._lock:
            self.hub.requests.append((self.command, self.path, status))
            self.hub.request_times.append(time.monotonic())

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            if self.hub.bandwidth_bps and content_type == "application/octet-stream":
                view, chunk = memoryview(body), 1 << 18
                for i in range(0, len(view), chunk):
                    self.hub.pace(len(view[i:i + chunk]))
                    self.wfile.write(view[i:i + chunk])
            else:
                self.wfile.write(body)
        self._log(status)

    def _json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, headers: dict | None = None):
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), h)

    def _check_access(self, repo_id: str) -> bool:
        """False (after answering) when the repo is missing or gated for this request."""
        if self.hub.repo_dir(repo_id) is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return False
        if repo_id in self.hub.gated:
            auth = self.headers.get("authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            if token is None:
                self._error(
                    401, "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                    "to access it. Please log in.",
                )
                return False
            if token not in self.hub.tokens:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the authorized list.")
                return False
        return True

    def _dispatch(self):
        with self.hub._lock:
            over = len(self.hub.requests) >= self.hub.max_requests
            if over:
                self.hub.overflow = True
        if over:
            self._error(500, None, "stand-in request budget exhausted")
            return
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = lambda self: self._dispatch()  # noqa: E731

    # --- routes -----------------------------------------------------------------------------

    def _route(self):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            query.update(parse_qs(body))
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
            repo_id = f"{parts[2]}/{parts[3]}" if len(parts) >= 4 else parts[2]
            rest = parts[4:]
            if not self._check_access(repo_id):
                return
            if not rest:
                return self._model_info(repo_id, "main", default=True)
            if rest[0] == "revision" and len(rest) == 2:
                return self._model_info(repo_id, rest[1])
            if rest[0] == "refs":
                return self._refs(repo_id)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
            if rest[0] == "paths-info" and len(rest) == 2:
                return self._paths_info(repo_id, rest[1], query.get("paths", []))
            return self._error(404, None, "Not found")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = f"{parts[0]}/{parts[1]}"
            if not self._check_access(repo_id):
                return
            return self._resolve(repo_id, parts[3], "/".join(parts[4:]))
        self._error(404, None, "Not found")

    def _commit_or_404(self, repo_id: str, revision: str) -> str | None:
        commit = self.hub.commit_of(repo_id, revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _model_info(self, repo_id: str, revision: str, default: bool = False):
        branches = self.hub.branches(repo_id)
        if default and "main" not in branches and branches:
            revision = sorted(branches)[-1]  # a cache without main: any branch stands for the repo
        commit = self._commit_or_404(repo_id, revision)
        if commit is None:
            return
        siblings = [{"rfilename": p} for p in self.hub.files(repo_id, commit)]
        self._json({
            "id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
            "gated": "manual" if repo_id in self.hub.gated else False, "disabled": False,
            "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
        })

    def _refs(self, repo_id: str):
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in self.hub.branches(repo_id).items()
        ]
        self._json({"branches": branches, "converts": [], "tags": []})

    def _entry(self, path: str, file: Path) -> dict:
        meta = self.hub.file_meta(file)
        entry = {"type": "file", "oid": meta["oid"], "size": meta["size"], "path": path}
        if is_lfs(path):
            entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
        return entry

    def _tree(self, repo_id: str, revision: str, sub: str, query: dict):
        commit = self._commit_or_404(repo_id, revision)
        if commit is None:
            return
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        files = self.hub.files(repo_id, commit)
        prefix = f"{sub}/" if sub else ""
        out, folders = [], set()
        for p, f in files.items():
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            if "/" in rel and not recursive:
                folders.add(prefix + rel.split("/")[0])
                continue
            out.append(self._entry(p, f))
        out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)]
        if sub and not out:
            return self._error(404, "EntryNotFound", f"{sub} does not exist on {revision}")
        self._json(out)

    def _paths_info(self, repo_id: str, revision: str, paths: list[str]):
        commit = self._commit_or_404(repo_id, revision)
        if commit is None:
            return
        files = self.hub.files(repo_id, commit)
        self._json([self._entry(p, files[p]) for p in paths if p in files])

    def _resolve(self, repo_id: str, revision: str, path: str):
        commit = self._commit_or_404(repo_id, revision)
        if commit is None:
            return
        files = self.hub.files(repo_id, commit)
        if path not in files:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}",
                               {"X-Repo-Commit": commit})
        kinds = ("5xx", "429") if self.command == "HEAD" else FAULT_KINDS
        fault = self.hub.take_fault(kinds, path, revision, commit)
        if fault in ("5xx", "5xx_get"):
            return self._error(503, None, "Service temporarily unavailable (injected)")
        if fault == "429":
            return self._error(429, None, "Too Many Requests (injected rate limit)",
                               {"Retry-After": str(self.hub.retry_after_s)})
        meta = self.hub.file_meta(files[path])
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if is_lfs(path):
            headers["ETag"] = f'"{meta["oid"]}"'
            headers["X-Linked-Etag"] = f'"{meta["sha256"]}"'
            headers["X-Linked-Size"] = str(meta["size"])
        else:
            headers["ETag"] = f'"{meta["oid"]}"'
        if self.command == "HEAD":
            return self._head(meta["size"], headers)
        data = Path(files[path]).read_bytes()
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng:
            with self.hub._lock:
                self.hub.range_requests.append((path, rng))
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                if start >= len(data):
                    return self._error(416, None, "Range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start:end + 1]
                status = 206
        if fault == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else data
        if fault == "truncate":
            data = data[: len(data) // 2]
            headers.pop("Content-Range", None)
            status = 200
        if fault in ("drop", "stall"):
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._log(status)
            if fault == "stall":
                time.sleep(self.hub.stall_s)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, data, headers, "application/octet-stream")

    def _head(self, size: int, headers: dict):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self._log(200)


@contextlib.contextmanager
def serve_hub(
    root: str | os.PathLike,
    *,
    gated: set[str] | frozenset[str] = frozenset(),
    tokens: set[str] | frozenset[str] = frozenset(),
    max_requests: int = 5000,
    lifetime_s: float = 600.0,
    bandwidth_bps: float | None = None,
) -> Iterator[HubStandIn]:
    """Serve the Hub cache under ``root`` on ``http://127.0.0.1:<ephemeral port>`` for the block.

    ``gated``: repo ids that need a token from ``tokens``. Yields the :class:`HubStandIn`; pass
    ``hub.endpoint`` as ``endpoint=`` to ``HfApi`` / ``hf_hub_download`` / the ``icl_probe.hub``
    functions (huggingface_hub reads ``HF_ENDPOINT`` once, at import, so setting the variable in
    a running process has no effect on its default endpoint). ``bandwidth_bps``: throttle file
    downloads to this many bytes per second in all (a shared link, as a real uplink is).
    """
    hub = HubStandIn(root=Path(root), gated=set(gated), tokens=set(tokens), max_requests=max_requests,
                     bandwidth_bps=bandwidth_bps)
    handler = type("BoundHandler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    def _stop():
        server.shutdown()
        server.server_close()

    watchdog = threading.Timer(lifetime_s, _stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield hub
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if hub.overflow:
        raise RuntimeError(f"the Hub stand-in answered more than {max_requests} requests: a client loop is unbounded")
