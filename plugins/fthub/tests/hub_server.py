"""A local HTTP server that answers the Hugging Face Hub endpoints ``ft upload`` reaches.

Only the HTTP boundary is emulated: the real ``huggingface_hub`` client runs against it (point
``HF_ENDPOINT`` at :attr:`HubEmulator.url`). The endpoints and payloads follow huggingface_hub 2.x
(``hf_api.py`` and ``_commit_api.py``):

- ``GET  /api/whoami-v2``                         token check (401 for an unknown token)
- ``POST /api/repos/create``                      ``{name, organization, visibility?}``; 409 when it exists
- ``POST /api/validate-yaml``                     the README's metadata, before anything is hashed
- ``POST /api/models/{ns}/{name}/preupload/{rev}`` upload mode per file: always ``regular``, so every file
  travels base64-encoded inside the commit (no LFS or Xet storage to emulate)
- ``POST /api/models/{ns}/{name}/commit/{rev}``    ndjson: a header line, then one ``file`` line per file

Every request is recorded (method, path, headers, body) so tests can assert what was sent and
that nothing else was called; unknown routes answer 404 and are recorded too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


@dataclass
class Request:
    """One request the emulator received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Repo:
    """A model repository: its visibility and the files of every commit, in order."""

    repo_id: str
    private: bool
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def files(self) -> dict[str, bytes]:
        """The repository's files after all commits."""
        merged: dict[str, bytes] = {}
        for commit in self.commits:
            merged.update(commit["files"])
        return merged


_REPO_ROUTE = re.compile(r"^/api/models/([^/]+)/([^/]+)/(preupload|commit)/([^/?]+)")


class HubEmulator:
    """Threaded local Hub: ``with HubEmulator(tokens={"hf_x": "alice"}) as hub: ...``."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = dict(tokens)
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to put in ``HF_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ routes

    def user_of(self, headers: dict[str, str]) -> str | None:
        """The user a request authenticates as, or None."""
        auth = headers.get("authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request: ``(status, json body)``."""
        self.requests.append(Request(method, path, headers, body))
        user = self.user_of(headers)
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(body))
        if user is None:
            return 401, {"error": "Invalid credentials in Authorization header"}
        if path == "/api/whoami-v2" and method == "GET":
            return 200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}}
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(user, json.loads(body))
        match = _REPO_ROUTE.match(path)
        if match and method == "POST":
            repo = self.repos.get(f"{match[1]}/{match[2]}")
            if repo is None:
                return 404, {"error": "Repository not found"}
            if match[1] != user:
                return 403, {"error": "You don't have the rights to push to this repo"}
            if match[3] == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]}
            return self._commit(repo, body)
        return 404, {"error": f"no route {method} {path}"}

    def _create_repo(self, user: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        namespace = payload.get("organization") or user
        if namespace != user:
            return 403, {"error": f"You don't have the rights to create a model under the namespace {namespace!r}"}
        repo_id = f"{namespace}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = Repo(repo_id, private=payload.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    @staticmethod
    def _validate_yaml(payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        content = payload["content"]
        if not content.startswith("---\n"):
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            metadata = yaml.safe_load(content.split("---\n", 2)[1])
        except (yaml.YAMLError, IndexError) as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def _commit(self, repo: Repo, body: bytes) -> tuple[int, dict[str, Any]]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {}
        for line in lines:
            if line["key"] == "file":
                value = line["value"]
                assert value["encoding"] == "base64", value
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] != "header":
                return 400, {"error": f"emulator only accepts regular files, got {line['key']}"}
        oid = hashlib.sha1(body).hexdigest()
        repo.commits.append({"summary": header["summary"], "description": header.get("description"), "files": files, "oid": oid})
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{repo.repo_id}/commit/{oid}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = emulator.handle(self.command, self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        return Handler
