"""A local stand-in for GitHub's pull-request REST API, used by tests and the demo.

It stands in for GitHub because GitHub cannot be reached from the machines this project is built and
tested on. To keep it honest, every request is checked against GitHub's published REST API
description (the api.github.com OpenAPI document that the npm package ``@octokit/openapi`` ships):
the path and method must be an operation GitHub has, path and query parameters and the JSON body
must match that operation's schemas. A request that does not is answered 422 and recorded in
``violations``, so a test can fail on it.

Endpoints served (the ones ``gitops.forge.GitHubForge`` uses):
``POST /repos/{owner}/{repo}/pulls``, ``GET /repos/{owner}/{repo}/pulls?head=``,
``POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers``,
``POST /repos/{owner}/{repo}/issues/{issue_number}/comments``,
``GET``/``PATCH /repos/{owner}/{repo}/pulls/{pull_number}`` (a rollback closes stale promotions).

Fetching the description: ``ensure_openapi()`` runs ``npm pack @octokit/openapi@<pinned>`` into a
cache folder outside the work tree (``~/.cache/markethub-rollout/openapi``) and extracts the one JSON
file it needs; later runs reuse it. ``python -m devenv.forge_standin fetch`` does the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_schema_validator import OAS30Validator

OPENAPI_PACKAGE = "@octokit/openapi"
OPENAPI_VERSION = "23.0.2"
OPENAPI_MEMBER = "package/generated/api.github.com.json"
CACHE_DIR = Path(os.environ.get("MARKETHUB_CACHE", Path.home() / ".cache" / "markethub-rollout")) / "openapi"


def ensure_openapi(cache_dir: Path = CACHE_DIR, version: str = OPENAPI_VERSION) -> Path:
    """The path of GitHub's OpenAPI description, fetched from the npm registry once and cached."""
    target = cache_dir / f"api.github.com-{version}.json"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"octokit-openapi-{version}.tgz"
    if not tarball.exists():
        done = subprocess.run(
            ["npm", "pack", "--silent", f"{OPENAPI_PACKAGE}@{version}", "--pack-destination", str(cache_dir)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not tarball.exists():
            raise RuntimeError(f"npm pack {OPENAPI_PACKAGE}@{version} failed: {done.stderr.strip()[-300:]}")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(OPENAPI_MEMBER)
        if member is None:
            raise RuntimeError(f"{tarball}: no {OPENAPI_MEMBER}")
        partial = target.with_suffix(".part")
        partial.write_bytes(member.read())
        partial.replace(target)
    return target


@cache
def _load_description(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        document: dict[str, Any] = json.load(stream)
    return document


@dataclass(frozen=True)
class _Operation:
    template: str
    pattern: re.Pattern[str]
    method: str
    spec: dict[str, Any]


class ApiDescription:
    """Request validation against an OpenAPI 3.0 document (only the operations asked about)."""

    def __init__(self, document: dict[str, Any], paths: tuple[str, ...]) -> None:
        self.document = document
        self.operations: list[_Operation] = []
        for template in paths:
            item = document["paths"][template]
            pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template)) + "$")
            for method, spec in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.operations.append(_Operation(template, pattern, method.upper(), spec))

    def _deref(self, node: Any, depth: int = 0) -> Any:
        if depth > 40:
            return {}
        if isinstance(node, dict):
            if "$ref" in node:
                target: Any = self.document
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                return self._deref(target, depth + 1)
            return {k: self._deref(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [self._deref(v, depth + 1) for v in node]
        return node

    def validate(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
        """Problems with a request, as GitHub's description sees them; empty when it conforms."""
        for op in self.operations:
            match = op.pattern.match(path)
            if match is None or op.method != method:
                continue
            problems: list[str] = []
            names = re.findall(r"\{([^/]+?)\}", op.template)
            values = dict(zip(names, match.groups(), strict=True))
            parameters = [self._deref(p) for p in op.spec.get("parameters", [])]
            known_query = {p["name"] for p in parameters if p["in"] == "query"}
            for unknown in sorted(set(query) - known_query):
                problems.append(f"query parameter {unknown!r} is not in {op.spec['operationId']}")
            for parameter in parameters:
                where, name = parameter["in"], parameter["name"]
                if where == "path":
                    raw: str | None = values.get(name)
                elif where == "query":
                    raw = query[name][-1] if name in query else None
                else:
                    continue
                if raw is None:
                    if parameter.get("required"):
                        problems.append(f"{where} parameter {name!r} is required")
                    continue
                schema = parameter.get("schema", {})
                value: Any = int(raw) if schema.get("type") == "integer" and raw.isdigit() else raw
                for error in OAS30Validator(schema).iter_errors(value):
                    problems.append(f"{where} parameter {name!r}: {error.message}")
            request_body = self._deref(op.spec.get("requestBody")) if "requestBody" in op.spec else None
            if request_body is None:
                if body is not None:
                    problems.append(f"{op.spec['operationId']} takes no request body")
            elif body is None:
                if request_body.get("required"):
                    problems.append(f"{op.spec['operationId']}: request body is required")
            else:
                schema = request_body["content"]["application/json"]["schema"]
                for error in OAS30Validator(schema).iter_errors(body):
                    at = "/".join(str(p) for p in error.absolute_path) or "body"
                    problems.append(f"{op.spec['operationId']}: {at}: {error.message}")
            return problems
        return [f"{method} {path} is not an operation of GitHub's REST API (or not served here)"]


SERVED_PATHS = (
    "/repos/{owner}/{repo}/pulls",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
    "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
)


@dataclass
class _Pull:
    number: int
    owner: str
    repo: str
    title: str
    body: str
    head: str
    base: str
    state: str = "open"
    reviewers: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


class ForgeStandIn:
    """The stand-in's state: pull requests, comments, every request, and every violation seen."""

    def __init__(self, description: ApiDescription, token: str | tuple[str, ...] | None = None) -> None:
        self.description = description
        # One token, or several (a GitHub App's and a workflow's GITHUB_TOKEN both act on a repository).
        self.token = token
        self.tokens = (token,) if isinstance(token, str) else tuple(token or ())
        self.pulls: list[_Pull] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.violations: list[str] = []
        self.lock = threading.Lock()
        # Tests set this to make the next N requests fail with 502, as a flaky GitHub would.
        self.fail_next = 0

    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": abs(hash(login)) % 10**8, "type": "User"}

    def _json(self, pull: _Pull, base_url: str) -> dict[str, Any]:
        return {
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "body": pull.body,
            "html_url": f"{base_url}/{pull.owner}/{pull.repo}/pull/{pull.number}",
            "head": {"ref": pull.head, "label": f"{pull.owner}:{pull.head}"},
            "base": {"ref": pull.base, "label": f"{pull.owner}:{pull.base}"},
            "requested_reviewers": [self._user(r) for r in pull.reviewers],
            "requested_teams": [{"slug": t, "name": t} for t in pull.teams],
        }

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: Any, base_url: str
    ) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query)
        with self.lock:
            self.requests.append((method, raw_path, body))
            if self.fail_next > 0:
                self.fail_next -= 1
                return 502, {"message": "Server Error (injected by the stand-in)"}
            if not headers.get("user-agent"):
                # GitHub rejects requests without a User-Agent.
                self.violations.append(f"{method} {path}: no User-Agent header")
                return 403, {"message": "Request forbidden by administrative rules."}
            if self.tokens and headers.get("authorization") not in {f"Bearer {t}" for t in self.tokens}:
                return 401, {"message": "Bad credentials"}
            problems = self.description.validate(method, path, query, body)
            if problems:
                self.violations.extend(f"{method} {raw_path}: {p}" for p in problems)
                return 422, {"message": "Validation Failed", "errors": problems}
            parts = path.strip("/").split("/")
            owner, repo = parts[1], parts[2]
            if parts[3:] == ["pulls"] and method == "POST":
                head = body["head"].split(":")[-1]
                if any(p.head == head and p.state == "open" for p in self.pulls):
                    return 422, {
                        "message": "Validation Failed",
                        "errors": [{"message": f"A pull request already exists for {owner}:{head}."}],
                    }
                pull = _Pull(
                    len(self.pulls) + 1,
                    owner,
                    repo,
                    body.get("title", ""),
                    body.get("body", ""),
                    head,
                    body["base"],
                )
                self.pulls.append(pull)
                return 201, self._json(pull, base_url)
            if parts[3:] == ["pulls"] and method == "GET":
                wanted = query.get("head", [""])[-1]
                state = query.get("state", ["open"])[-1]
                found = [
                    self._json(p, base_url)
                    for p in self.pulls
                    if (not wanted or f"{p.owner}:{p.head}" == wanted) and state in ("all", p.state)
                ]
                return 200, found
            pull_number = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else 0
            matching = [p for p in self.pulls if p.number == pull_number and p.owner == owner]
            if not matching:
                return 404, {"message": "Not Found"}
            pull = matching[0]
            if parts[3] == "pulls" and parts[5:] == [] and method == "PATCH":
                if body.get("state") in ("open", "closed"):
                    pull.state = body["state"]
                for key in ("title", "body"):
                    if key in body:
                        setattr(pull, key, body[key])
                return 200, self._json(pull, base_url)
            if parts[3] == "pulls" and parts[5:] == [] and method == "GET":
                return 200, self._json(pull, base_url)
            if parts[5:] == ["requested_reviewers"]:
                for login in body.get("reviewers", []):
                    if login not in pull.reviewers:
                        pull.reviewers.append(login)
                for team in body.get("team_reviewers", []):
                    if team not in pull.teams:
                        pull.teams.append(team)
                return 201, self._json(pull, base_url)
            if parts[5:] == ["comments"]:
                pull.comments.append(body["body"])
                return 201, {"id": len(pull.comments), "body": body["body"]}
            return 404, {"message": "Not Found"}

    def pull(self, head: str) -> _Pull | None:
        with self.lock:
            return next((p for p in self.pulls if p.head == head), None)

    def close(self, number: int, comment: str) -> None:
        """A person closes a pull request with a comment (the reviewer of a conflicting promotion)."""
        with self.lock:
            for pull in self.pulls:
                if pull.number == number:
                    pull.comments.append(comment)
                    pull.state = "closed"

    def merge(self, number: int) -> None:
        """Close a pull request as a merge on GitHub would (the git side of a merge is the caller's)."""
        with self.lock:
            for pull in self.pulls:
                if pull.number == number:
                    pull.state = "closed"


def _handler(standin: ForgeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # the token is in headers: log nothing
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                status, payload = 400, {"message": "Problems parsing JSON"}
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                host, port = self.server.server_address[:2]  # type: ignore[index,misc]
                base_url = f"http://{host!s}:{port}"
                status, payload = standin.handle(self.command, self.path, headers, body, base_url)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler


@contextmanager
def serve_forge(
    token: str | tuple[str, ...] | None = None, description_path: Path | None = None
) -> Iterator[tuple[str, ForgeStandIn]]:
    """Run the stand-in on a free loopback port; yields (base URL, state). Stops on exit, even on error."""
    document = _load_description(str(description_path or ensure_openapi()))
    standin = ForgeStandIn(ApiDescription(document, SERVED_PATHS), token=token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="forge-standin", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["fetch"]:
        print(ensure_openapi())
    else:
        print("usage: python -m devenv.forge_standin fetch", file=sys.stderr)
        sys.exit(2)
