"""A fake Hugging Face Hub on 127.0.0.1 for testing pushes up to the network boundary.

It speaks the few calls that ``HfApi.create_repo`` + ``HfApi.upload_folder`` make
(huggingface_hub 2.x, regular non-LFS uploads), keeps the committed files in memory
and logs every request, so a test can assert exactly what arrived::

    with FakeHub() as hub:
        # in a subprocess: HF_ENDPOINT=hub.url HF_TOKEN=dummy python push.py
        ...
    hub.files("user/model")["config.json"]   # -> bytes as committed

``FakeHub(tokens=("good",))`` answers 401 to any other token. Calls served (anything else is logged in
``hub.unhandled`` and answered 404):

- ``POST /api/repos/create``                        -> ``{"url": ...}`` (409 if it exists)
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``          -> the committed file, or 404 EntryNotFound
- ``POST /api/validate-yaml``                       -> no errors, no warnings
- ``GET /api/agent-harnesses``                      -> an empty registry (client telemetry)
- ``POST /api/models/{repo}/preupload/{rev}``        -> ``uploadMode: "regular"`` for every file
- ``POST /api/models/{repo}/commit/{rev}``           -> stores the NDJSON's base64 files

Run ``python tests/hub_server.py`` to keep one up by hand (prints its URL).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

DEFAULT_NAMESPACE = "dummy-user"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_PREUPLOAD = re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$")
_COMMIT = re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$")
_MODEL_INFO = re.compile(rf"^/api/models/{_REPO}/revision/(?P<rev>[^/]+)$")


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Repo:
    """A repository on the fake Hub: its creation payload, files and commits."""

    repo_id: str
    create_payload: dict
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)


class FakeHub:
    """A threaded HTTP server on an ephemeral port of 127.0.0.1; use as a context manager."""

    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self.tokens = tokens  # if given, any other bearer token is answered 401, as the Hub answers a bad token
        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def files(self, repo_id: str) -> dict[str, bytes]:
        """Files committed to ``repo_id`` so far (path -> bytes)."""
        return dict(self.repos[repo_id].files)

    def calls(self) -> list[str]:
        """``"METHOD /path"`` of every request, in order (handy for asserting the protocol)."""
        return [f"{r.method} {r.path}" for r in self.requests]

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the Hub's endpoints ------------------------------------------------------

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(req)
        if self.tokens and req.headers.get("authorization") not in {f"Bearer {t}" for t in self.tokens}:
            status, headers, body = _json(401, {"error": "Invalid credentials in Authorization header"})
            return status, {**headers, "X-Error-Message": "Invalid credentials in Authorization header"}, body
        if req.method == "POST" and req.path == "/api/repos/create":
            return self._create_repo(req.json())
        if req.method == "POST" and req.path == "/api/validate-yaml":
            return _json(200, {"errors": [], "warnings": []})
        if req.method == "GET" and req.path == "/api/agent-harnesses":  # best-effort client telemetry
            return _json(200, {"standardEnvVars": [], "harnesses": {}})
        if req.method in ("HEAD", "GET") and (m := _RESOLVE.match(req.path)):
            return self._resolve(m["repo"], m["path"], req.method)
        if req.method == "POST" and (m := _PREUPLOAD.match(req.path)):
            if m["repo"] not in self.repos:
                return _not_found("RepoNotFound", f"Repository {m['repo']} not found")
            files = req.json()["files"]
            return _json(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                    ]
                },
            )
        if req.method == "GET" and (m := _MODEL_INFO.match(req.path)):  # huggingface_hub 0.34 asks before uploading
            if m["repo"] not in self.repos:
                return _not_found("RepoNotFound", f"Repository {m['repo']} not found")
            return _json(200, {"id": m["repo"], "xetEnabled": False})
        if req.method == "POST" and (m := _COMMIT.match(req.path)):
            return self._commit(m["repo"], req.body)
        with self.lock:
            self.unhandled.append(req)
        return _not_found("NotImplemented", f"fake hub does not serve {req.method} {req.path}")

    def _create_repo(self, payload: dict) -> tuple[int, dict[str, str], bytes]:
        repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
        with self.lock:
            if repo_id in self.repos:
                return _json(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
            self.repos[repo_id] = Repo(repo_id=repo_id, create_payload=payload)
        return _json(200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _resolve(self, repo_id: str, path: str, method: str) -> tuple[int, dict[str, str], bytes]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _not_found("RepoNotFound", f"Repository {repo_id} not found")
        if path not in repo.files:
            return _not_found("EntryNotFound", f"{path} does not exist on main")
        content = repo.files[path]
        return 200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(content))}, content

    def _commit(self, repo_id: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if repo_id not in self.repos:
            return _not_found("RepoNotFound", f"Repository {repo_id} not found")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        added: dict[str, bytes] = {}
        for item in lines:
            if item["key"] == "file":
                assert item["value"]["encoding"] == "base64", item["value"]["encoding"]
                added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return _json(400, {"error": f"fake hub only accepts inline files, got {item['key']!r}"})
        repo = self.repos[repo_id]
        with self.lock:
            repo.files.update(added)
            repo.commits.append({"header": header, "files": sorted(added)})
            oid = f"{len(repo.commits):040x}"
        return _json(200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})


def _json(status: int, payload: dict) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return status, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body


def _not_found(code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = _json(404, {"error": message})
    return status, {**headers, "X-Error-Code": code, "X-Error-Message": message}, body


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            req = Request(
                method=self.command,
                path=unquote(split.path),
                query=split.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self._read_body(),
            )
            try:
                status, headers, body = hub.handle(req)
            except Exception as err:  # a bug in the fake must show up in the test, not hang it
                status, headers, body = _json(500, {"error": f"fake hub crashed: {err!r}"})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args) -> None:  # keep pytest output clean
            pass

    return Handler


if __name__ == "__main__":
    import time

    with FakeHub() as running:
        print(f"fake hub listening on {running.url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
