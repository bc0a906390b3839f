"""A local GitHub API stand-in built from recorded traffic, and a GitHub-enabled workspace.

The stand-in is a real HTTP server on 127.0.0.1 (in a thread). It answers
every call releaser makes with a body cloned from the recorded answer of the
same endpoint in ``recorded/`` (same keys, same types; ids, URLs and the
fields the call sets filled in), keeps what was created (deployments,
statuses, comments, releases, assets) and logs every request it receives.
``assert_matches_recordings`` then checks each logged request against the
recorded requests: same method, same path shape, and JSON body keys that
include the recorded ones and add only parameters GitHub documents for that
endpoint.
"""

from __future__ import annotations

import base64
import copy
import gzip
import itertools
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from releaser.demo.workspace import ExampleWorkspace

RECORDED = Path(__file__).parent / "recorded"
OWNER, REPO = "council", "casework"
GHE_PREFIX = "/api/v3"
TOKEN = "ghs_SENTINEL0123456789abcdefTOKEN"  # must never appear in any output

# Endpoint shapes: path template (under /repos/{o}/{r} unless it starts with /uploads).
_SHAPES: list[tuple[str, str]] = [
    (r"/repos/[^/]+/[^/]+", "/repos/{o}/{r}"),
    (r"/repos/[^/]+/[^/]+/deployments", "/repos/{o}/{r}/deployments"),
    (r"/repos/[^/]+/[^/]+/deployments/\d+", "/repos/{o}/{r}/deployments/{id}"),
    (r"/repos/[^/]+/[^/]+/deployments/\d+/statuses", "/repos/{o}/{r}/deployments/{id}/statuses"),
    (r"/repos/[^/]+/[^/]+/statuses/[0-9a-f]{40}", "/repos/{o}/{r}/statuses/{sha}"),
    (r"/repos/[^/]+/[^/]+/check-runs", "/repos/{o}/{r}/check-runs"),
    (r"/repos/[^/]+/[^/]+/issues/\d+", "/repos/{o}/{r}/issues/{n}"),
    (r"/repos/[^/]+/[^/]+/issues/\d+/comments", "/repos/{o}/{r}/issues/{n}/comments"),
    (r"/repos/[^/]+/[^/]+/issues/comments/\d+", "/repos/{o}/{r}/issues/comments/{id}"),
    (r"/repos/[^/]+/[^/]+/releases", "/repos/{o}/{r}/releases"),
    (r"/repos/[^/]+/[^/]+/releases/\d+", "/repos/{o}/{r}/releases/{id}"),
    (r"/repos/[^/]+/[^/]+/releases/\d+/assets", "/repos/{o}/{r}/releases/{id}/assets"),
    (r"/repos/[^/]+/[^/]+/releases/tags/[^/]+", "/repos/{o}/{r}/releases/tags/{tag}"),
]

# Calls GitHub documents that the cassettes do not hold (listing and editing comments):
# the body keys come from the REST reference; the answers reuse the recorded comment.
_UNRECORDED: dict[tuple[str, str], set[str]] = {
    ("GET", "/repos/{o}/{r}/issues/{n}/comments"): set(),
    ("PATCH", "/repos/{o}/{r}/issues/comments/{id}"): {"body"},
}

# Optional body parameters GitHub documents for the recorded endpoints.
_DOCUMENTED_EXTRAS: dict[tuple[str, str], set[str]] = {
    ("POST", "/repos/{o}/{r}/deployments"): {
        "environment",
        "task",
        "transient_environment",
        "production_environment",
    },
    ("POST", "/repos/{o}/{r}/deployments/{id}/statuses"): {
        "target_url",
        "log_url",
        "description",
        "environment",
        "environment_url",
        "auto_inactive",
    },
    ("POST", "/repos/{o}/{r}/statuses/{sha}"): {"target_url", "description"},
    ("POST", "/repos/{o}/{r}/check-runs"): {
        "details_url",
        "external_id",
        "status",
        "started_at",
        "conclusion",
        "completed_at",
        "output",
        "actions",
    },
    ("POST", "/repos/{o}/{r}/releases"): {"body", "generate_release_notes", "make_latest"},
}


def shape(path: str) -> str:
    """The endpoint template of a request path (``/uploads`` prefix kept apart)."""
    upload = path.startswith("/uploads")
    bare = path[len("/uploads") :] if upload else path
    bare = urlsplit(bare).path
    for pattern, template in _SHAPES:
        if re.fullmatch(pattern, bare):
            return ("/uploads" if upload else "") + template
    return ("/uploads" if upload else "") + bare


def _cassettes() -> list[dict[str, Any]]:
    return [
        i
        for f in sorted(RECORDED.glob("*.json"))
        for i in json.loads(f.read_text())["http_interactions"]
    ]


def recorded_requests() -> dict[tuple[str, str], set[str]]:
    """(method, endpoint template) -> JSON body keys of the recorded request."""
    found: dict[tuple[str, str], set[str]] = {}
    for i in _cassettes():
        req = i["request"]
        url = urlsplit(req["uri"])
        path = ("/uploads" if url.netloc.startswith("uploads.") else "") + url.path
        text = req.get("body", {}).get("string") or ""
        try:
            keys = set(json.loads(text)) if text.startswith("{") else set()
        except ValueError:
            keys = set()
        found.setdefault((req["method"], shape(path)), set()).update(keys)
    return found


def _body_text(resp: dict[str, Any]) -> str:
    """A recorded response body as text (some are stored base64-encoded and gzipped)."""
    body = resp["body"]
    if body.get("base64_string"):
        raw = base64.b64decode(body["base64_string"])
        encoding = resp["headers"].get("Content-Encoding") or []
        if "gzip" in (encoding if isinstance(encoding, list) else [encoding]):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    return str(body.get("string") or "")


def _recorded_answer(method: str, template: str) -> Any:
    """The recorded response body for an endpoint (first one with a JSON body)."""
    for i in _cassettes():
        req, resp = i["request"], i["response"]
        url = urlsplit(req["uri"])
        path = ("/uploads" if url.netloc.startswith("uploads.") else "") + url.path
        if req["method"] == method and shape(path) == template:
            text = _body_text(resp)
            if text.strip().startswith(("{", "[")):
                return json.loads(text)
    raise KeyError((method, template))


@dataclass
class Logged:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def template(self) -> str:
        """The endpoint template of the path."""
        return shape(self.path)

    def json(self) -> Any:
        """The JSON body."""
        return json.loads(self.body) if self.body else None


@dataclass
class Failure:
    """An error every request gets while set: status, headers and GitHub's error body."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class GithubStandIn:
    """State and logic of the stand-in; the HTTP handler delegates to :meth:`handle`."""

    def __init__(self) -> None:
        self.base = ""
        self.log: list[Logged] = []
        self.deployments: list[dict[str, Any]] = []
        self.deployment_statuses: dict[int, list[dict[str, Any]]] = {}
        self.commit_statuses: list[dict[str, Any]] = []
        self.check_runs: list[dict[str, Any]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.releases: list[dict[str, Any]] = []
        self.assets: dict[int, list[dict[str, Any]]] = {}
        self.failure: Failure | None = None
        self.enterprise_requests = 0
        self.api_prefix = ""  # "/api/v3" to answer like GitHub Enterprise
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._templates = {
            key: _recorded_answer(*key)
            for key in [
                ("GET", "/repos/{o}/{r}"),
                ("POST", "/repos/{o}/{r}/deployments"),
                ("POST", "/repos/{o}/{r}/deployments/{id}/statuses"),
                ("POST", "/repos/{o}/{r}/statuses/{sha}"),
                ("POST", "/repos/{o}/{r}/check-runs"),
                ("GET", "/repos/{o}/{r}/issues/{n}"),
                ("POST", "/repos/{o}/{r}/issues/{n}/comments"),
                ("POST", "/repos/{o}/{r}/releases"),
                ("POST", "/uploads/repos/{o}/{r}/releases/{id}/assets"),
            ]
        }

    # --- helpers ----------------------------------------------------------------------------

    def _from(self, key: tuple[str, str], **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = copy.deepcopy(self._templates[key])
        for name in fields:
            assert name in body, f"{name} is not a key of the recorded answer {key}"
        body.update(fields)
        return body

    @property
    def repo_url(self) -> str:
        """API URL of the stand-in's repository."""
        return f"{self.base}{self.api_prefix}/repos/{OWNER}/{REPO}"

    def _now(self) -> str:
        return "2026-03-02T09:00:00Z"

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, req: Logged) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, headers, JSON body)."""
        with self._lock:
            self.log.append(req)
            if self.failure is not None:
                f = self.failure
                doc = "https://docs.github.com/rest"
                return f.status, f.headers, {"message": f.message, "documentation_url": doc}
            if req.headers.get("authorization") != f"token {TOKEN}":
                return 401, {}, {"message": "Bad credentials"}
            return self._route(req)

    def _route(self, req: Logged) -> tuple[int, dict[str, str], Any]:
        m, t = req.method, req.template
        ids = [int(x) for x in re.findall(r"/(\d+)(?=/|$)", urlsplit(req.path).path)]
        if (m, t) == ("GET", "/repos/{o}/{r}"):
            return (
                200,
                {},
                self._from((m, t), url=self.repo_url, full_name=f"{OWNER}/{REPO}", name=REPO),
            )
        if (m, t) == ("GET", "/repos/{o}/{r}/deployments"):
            env = req.query.get("environment", [None])[0]
            found = [d for d in self.deployments if env is None or d["environment"] == env]
            return 200, {}, list(reversed(found))
        if (m, t) == ("POST", "/repos/{o}/{r}/deployments"):
            data, i = req.json(), next(self._ids)
            url = f"{self.repo_url}/deployments/{i}"
            dep = self._from(
                (m, t),
                url=url,
                id=i,
                sha=data["ref"],
                ref=data["ref"],
                payload=data["payload"],
                environment=data.get("environment", "production"),
                description=data.get("description") or None,
                statuses_url=f"{url}/statuses",
                repository_url=self.repo_url,
            )
            self.deployments.append(dep)
            self.deployment_statuses[i] = []
            return 201, {}, dep
        if (m, t) == ("GET", "/repos/{o}/{r}/deployments/{id}"):
            found = [d for d in self.deployments if d["id"] == ids[0]]
            return (200, {}, found[0]) if found else (404, {}, {"message": "Not Found"})
        if (m, t) == ("GET", "/repos/{o}/{r}/deployments/{id}/statuses"):
            return 200, {}, list(reversed(self.deployment_statuses.get(ids[0], [])))
        if (m, t) == ("POST", "/repos/{o}/{r}/deployments/{id}/statuses"):
            data, i = req.json(), next(self._ids)
            st = self._from(
                (m, t),
                url=f"{self.repo_url}/deployments/{ids[0]}/statuses/{i}",
                id=i,
                state=data["state"],
                description=data.get("description", ""),
                target_url=data.get("target_url", ""),
                deployment_url=f"{self.repo_url}/deployments/{ids[0]}",
                repository_url=self.repo_url,
            )
            self.deployment_statuses[ids[0]].append(st)
            return 201, {}, st
        if (m, t) == ("POST", "/repos/{o}/{r}/statuses/{sha}"):
            data, i = req.json(), next(self._ids)
            sha = urlsplit(req.path).path.rsplit("/", 1)[1]
            st = self._from(
                (m, t),
                url=f"{self.repo_url}/statuses/{sha}",
                id=i,
                state=data["state"],
                description=data.get("description"),
                target_url=data.get("target_url"),
                context=data.get("context", "default"),
            )
            self.commit_statuses.append(st)
            return 201, {}, st
        if (m, t) == ("POST", "/repos/{o}/{r}/check-runs"):
            data, i = req.json(), next(self._ids)
            run = self._from(
                (m, t),
                id=i,
                url=f"{self.repo_url}/check-runs/{i}",
                head_sha=data["head_sha"],
                name=data["name"],
                status=data.get("status", "queued"),
                conclusion=data.get("conclusion"),
                completed_at=data.get("completed_at"),
            )
            run["output"].update(data.get("output", {}))
            self.check_runs.append(run)
            return 201, {}, run
        if (m, t) == ("GET", "/repos/{o}/{r}/issues/{n}"):
            n = ids[0]
            return (
                200,
                {},
                self._from(
                    (m, t),
                    url=f"{self.repo_url}/issues/{n}",
                    comments_url=f"{self.repo_url}/issues/{n}/comments",
                    number=n,
                ),
            )
        if (m, t) == ("GET", "/repos/{o}/{r}/issues/{n}/comments"):
            return 200, {}, list(self.comments.get(ids[0], []))
        if (m, t) == ("POST", "/repos/{o}/{r}/issues/{n}/comments"):
            n, i = ids[0], next(self._ids)
            body = req.json()["body"]
            comment = self._from(
                ("POST", "/repos/{o}/{r}/issues/{n}/comments"),
                url=f"{self.repo_url}/issues/comments/{i}",
                issue_url=f"{self.repo_url}/issues/{n}",
                id=i,
                body=body,
                body_text=body,
                body_html=body,
            )
            self.comments.setdefault(n, []).append(comment)
            return 201, {}, comment
        if (m, t) == ("PATCH", "/repos/{o}/{r}/issues/comments/{id}"):
            for comments in self.comments.values():
                for c in comments:
                    if c["id"] == ids[0]:
                        body = req.json()["body"]
                        c.update(body=body, body_text=body, body_html=body)
                        return 200, {}, c
            return 404, {}, {"message": "Not Found"}
        if (m, t) == ("GET", "/repos/{o}/{r}/releases/tags/{tag}"):
            tag = urlsplit(req.path).path.rsplit("/", 1)[1]
            found = [r for r in self.releases if r["tag_name"] == tag]
            return (200, {}, found[0]) if found else (404, {}, {"message": "Not Found"})
        if (m, t) == ("POST", "/repos/{o}/{r}/releases"):
            data, i = req.json(), next(self._ids)
            url = f"{self.repo_url}/releases/{i}"
            rel = self._from(
                (m, t),
                url=url,
                id=i,
                assets_url=f"{url}/assets",
                upload_url=f"{self.base}/uploads/repos/{OWNER}/{REPO}/releases/{i}/assets"
                "{?name,label}",
                html_url=f"https://github.invalid/{OWNER}/{REPO}/releases/tag/{data['tag_name']}",
                tag_name=data["tag_name"],
                target_commitish=data.get("target_commitish"),
                name=data.get("name"),
                body=data.get("body"),
                assets=[],
            )
            self.releases.append(rel)
            self.assets[i] = []
            return 201, {}, rel
        if (m, t) == ("GET", "/repos/{o}/{r}/releases/{id}/assets"):
            return 200, {}, list(self.assets.get(ids[0], []))
        if (m, t) == ("POST", "/uploads/repos/{o}/{r}/releases/{id}/assets"):
            i = next(self._ids)
            name = req.query["name"][0]
            asset = self._from(
                (m, t),
                url=f"{self.repo_url}/releases/assets/{i}",
                id=i,
                name=name,
                content_type=req.headers.get("content-type"),
                size=len(req.body),
            )
            asset["_data"] = req.body
            self.assets[ids[0]].append(asset)
            for rel in self.releases:
                if rel["id"] == ids[0]:
                    rel["assets"].append({k: v for k, v in asset.items() if k != "_data"})
            return 201, {}, {k: v for k, v in asset.items() if k != "_data"}
        return 404, {}, {"message": "Not Found"}


def _handler(standin: GithubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path
            if path.startswith(GHE_PREFIX):  # GitHub Enterprise serves the API under /api/v3
                path = path[len(GHE_PREFIX) :]
                standin.enterprise_requests += 1
            url = urlsplit(path)
            req = Logged(
                self.command,
                path,
                parse_qs(url.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            status, headers, payload = standin.handle(req)
            data = json.dumps(payload, default=lambda b: None).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@pytest.fixture
def github() -> Iterator[GithubStandIn]:
    """A running stand-in at ``github.base``; stopped after the test."""
    standin = GithubStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def actions_env(monkeypatch: pytest.MonkeyPatch, api_url: str, **extra: str) -> None:
    """Set the variables GitHub Actions provides, pointing at ``api_url``."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{REPO}")
    monkeypatch.setenv("GITHUB_API_URL", api_url)
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.invalid")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    for k, v in extra.items():
        monkeypatch.setenv(k, v)


def free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (GitHub down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


GITHUB_SECTION = """
github:
  environment: production
  deployments: true
  gate_status: status
  pr_comments: true
  release_on_production: true
"""


def enable_github(root: Path, section: str = GITHUB_SECTION) -> None:
    """Add a ``github:`` section to the workspace's releaser.yaml and commit it."""
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + section, encoding="utf-8")
    subprocess.run(["git", "commit", "-qam", "mirror to GitHub"], cwd=root, check=True)


@pytest.fixture
def github_ws(release_ws: ExampleWorkspace) -> ExampleWorkspace:
    """A private example workspace whose releaser.yaml turns GitHub mirroring on."""
    enable_github(release_ws.root)
    return release_ws


def assert_matches_recordings(log: list[Logged]) -> None:
    """Every request: a recorded (or documented) method and path, with the recorded body keys."""
    recorded = recorded_requests()
    assert log, "no request reached the stand-in"
    for req in log:
        key = (req.method, req.template)
        if key in _UNRECORDED:
            expected, extras = _UNRECORDED[key], set()
        else:
            assert key in recorded, f"{key} was never recorded: {sorted(recorded)}"
            expected, extras = recorded[key], _DOCUMENTED_EXTRAS.get(key, set())
        body = (
            req.json()
            if req.headers.get("content-type", "").startswith("application/json")
            else None
        )
        keys = set(body) if isinstance(body, dict) else set()
        assert expected <= keys, f"{key}: sent {sorted(keys)}, recorded {sorted(expected)}"
        assert keys <= expected | extras, (
            f"{key}: unexpected keys {sorted(keys - expected - extras)}"
        )
