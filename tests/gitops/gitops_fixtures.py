"""Shared helpers for the gitops tests: a real bare remote with clones, a small plan, the forge stand-in."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devenv.forge_standin import ForgeStandIn, ensure_openapi, serve_forge
from rollout_policies.core import Evidence, Measurement
from rollout_policies.plan.model import Plan

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

STACK_CONFIG = """\
# Stack config for the US production cluster (comments must survive every edit).
encryptionsalt: v1:abc==
config:
  kubernetes:context: prod-us   # the kubeconfig context
  markethub-rollout:region: us-east-1
  markethub-rollout:rollout:
    # where the rollout is; only the tool writes this block
    stage: limited          # a stage id of the plan
    step: 0                 # index into the stage's traffic steps
    stable:    {colour: blue,  version: 4.12.0}
    candidate: {colour: green, version: "5.0"}
    weights:   {blue: 98, green: 2}
    stageStartedAt: "2026-11-20T09:00:00Z"
    stepStartedAt:  '2026-11-20T09:00:00Z'   # single quotes on purpose
  markethub-rollout:replicas:
    - 3
    - 5
"""

PLAN = {
    "name": "markethub-mobile-test",
    "service": "markethub-api",
    "decision_authority": ["DevOps lead", "CTO"],
    "metrics": [
        {
            "id": "crash_rate",
            "name": "Crashes/Exceptions",
            "unit": "%",
            "direction": "lower",
            "source": {"provider": "manual"},
        }
    ],
    "stages": [
        {
            "id": "limited",
            "name": "Limited release",
            "audience": {"kind": "percentage"},
            "steps": [{"weight": 2, "bake": "1h"}, {"weight": 5, "bake": "1h"}],
            "min_duration": "2h",
            "tables": [
                {
                    "name": "Technical Metrics",
                    "gates": [{"metric": "crash_rate", "target": "< 1", "alert": "> 2"}],
                }
            ],
            "go": [
                {"id": "feedback", "text": "Positive feedback", "kind": "manual", "owners": ["DevOps lead"]}
            ],
            "rollback_objective": "5m",
        },
        {
            "id": "full",
            "name": "Full release",
            "audience": {"kind": "percentage"},
            "steps": [{"weight": 100, "bake": "1h"}],
            "min_duration": "1h",
            "tables": [],
            "rollback_objective": "5m",
        },
    ],
    "triggers": [],
    "objectives": {
        "backups": [{"kind": "full", "every": "24h", "retention": "30d"}],
        "disaster_recovery": {
            "regions": ["us-east-1", "us-west-2"],
            "primary": "us-east-1",
            "rto": "1h",
            "rpo": "1h",
            "drill_every": "30d",
        },
    },
    "notifications": {"slack_webhook_env": "TEST_SLACK_URL", "pagerduty_routing_key_env": "TEST_PD_KEY"},
}


@pytest.fixture
def plan() -> Plan:
    return Plan.model_validate(PLAN)


def healthy(value: float = 0.4) -> object:
    """Evidence that passes the test plan's gate, observed at the time of asking."""

    def evidence_for(state: object) -> Evidence:
        return Evidence.of([Measurement.ok("crash_rate", value, T0 + timedelta(hours=1, minutes=30))])

    return evidence_for


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout


class Remote:
    """A bare repository standing for the team's GitHub repository, and a way to clone it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        seed = self.clone("seed")
        (seed / "Pulumi.prod-us.yaml").write_text(STACK_CONFIG)
        (seed / "Pulumi.prod-eu.yaml").write_text(STACK_CONFIG.replace("prod-us", "prod-eu"))
        git(seed, "add", ".")
        git(seed, "commit", "-q", "-m", "seed: two stacks at limited step 0")
        git(seed, "push", "-q", "origin", "main")

    def clone(self, name: str) -> Path:
        target = self.root / name
        subprocess.run(["git", "clone", "-q", str(self.bare), str(target)], check=True, capture_output=True)
        git(target, "config", "user.name", f"tester {name}")
        git(target, "config", "user.email", f"{name}@example.test")
        return target

    def show(self, ref: str, path: str) -> str:
        return git(self.bare, "show", f"{ref}:{path}")

    def branches(self) -> dict[str, str]:
        out = git(self.bare, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        return dict(line.split(" ") for line in out.splitlines())

    def log(self, ref: str = "main") -> list[str]:
        return git(self.bare, "log", "--format=%H", ref).split()


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture(scope="session")
def openapi_path() -> Path:
    """GitHub's OpenAPI description, fetched once with `npm pack` into the cache outside the tree."""
    return ensure_openapi()


@pytest.fixture
def forge(openapi_path: Path) -> Iterator[tuple[str, ForgeStandIn]]:
    """The GitHub API stand-in (GitHub itself cannot be reached here); fails the test on any violation."""
    with serve_forge(token="test-token", description_path=openapi_path) as (url, standin):
        yield url, standin
        assert standin.violations == []


def write_plan_file(directory: Path) -> Path:
    """The test plan in the plan-file format (tables defined once at the top, named by stages)."""
    import copy

    import yaml

    data = copy.deepcopy(PLAN)
    tables = []
    for stage in data["stages"]:
        names = []
        for table in stage.get("tables", []):
            tables.append(table)
            names.append(table["name"])
        stage["tables"] = names
    data["tables"] = tables
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Receiver:
    """A local HTTP receiver standing in for Slack's webhook and PagerDuty's Events API, which cannot
    be reached from here. It records each JSON body with its path and answers as they do."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[str, dict[str, object]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.received.append((self.path, body))
                status = 202 if self.path.startswith("/v2/enqueue") else 200
                payload = b'{"status":"success"}' if status == 202 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def at(self, prefix: str) -> list[dict[str, object]]:
        return [body for path, body in self.received if path.startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.close()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``rollout <argv>`` in this process: exit status, stdout and stderr."""
    from rollout_policies.cli.main import main

    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
