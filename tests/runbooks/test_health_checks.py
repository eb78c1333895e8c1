"""Route 53 health checks as real resources: `rollout bootstrap health-checks` against moto's Route 53.

moto stands in for Route 53 (the only AWS stand-in allowed here). The stack files are the shipped
production ones, copied into a real git repository, so what is checked is what a team would run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from drill_helpers import PRIMARY, SECONDARY, Regions, run

from devenv.services import MotoServer
from infra.failover import ANN_HEALTH_CHECK, FailoverArgs, failover_annotations
from infra.settings import RegionRole, settings_from_stack_file
from runbooks.health_checks import caller_reference, ensure_health_checks, health_check_config
from runbooks.region_failover import FailoverDns, ensure_failover_records

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("prod-us-east-1", "prod-us-west-2")


def health_checks(route53: Any) -> dict[str, dict[str, Any]]:
    return {check["Id"]: check for check in route53.list_health_checks()["HealthChecks"]}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the shipped production stack files, committed."""
    folder = tmp_path / "rollout"
    folder.mkdir()
    for stack in STACKS:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", folder)
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "sre@example.com"],
        ["config", "user.name", "sre"],
        ["add", "."],
        ["commit", "-q", "-m", "stacks"],
    ):
        subprocess.run(["git", *args], cwd=folder, check=True)
    return folder


def git_log(repo: Path) -> list[str]:
    return subprocess.run(
        ["git", "log", "--format=%s"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.splitlines()


def test_bootstrap_creates_one_check_per_region_and_writes_each_stacks_ids(
    repo: Path, moto_server: MotoServer, route53: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bootstrap", "health-checks", "--stack", "prod-us-east-1", "--stacks-dir", str(repo),
            "--aws-endpoint-url", moto_server.endpoint_url, "--commit"]  # fmt: skip

    code, out, err = run(argv, capsys)

    assert code == 0, out + err
    checks = health_checks(route53)
    for stack in STACKS:
        settings = settings_from_stack_file(repo / f"Pulumi.{stack}.yaml")
        ids = settings.failover.health_checks
        assert set(ids) == {PRIMARY, SECONDARY}, stack
        for region, check_id in ids.items():
            config = checks[check_id]["HealthCheckConfig"]
            url = settings.failover.probe_urls[region]
            assert config["FullyQualifiedDomainName"] == f"{region}.api.markethub.example"
            assert config["ResourcePath"] == "/healthz/ready"
            assert checks[check_id]["CallerReference"] == caller_reference("markethub-mobile", region, url)
        # Each region's failover record carries its own region's check.
        role = RegionRole.PRIMARY if settings.region == PRIMARY else RegionRole.SECONDARY
        annotations = failover_annotations(
            FailoverArgs("markethub-mobile", "markethub", settings.region, role, failover=settings.failover)
        )
        assert annotations[ANN_HEALTH_CHECK] == ids[settings.region]
    assert git_log(repo)[0].startswith("bootstrap: Route 53 health checks of us-east-1 ")
    # The edit adds the three lines of the map to each file and moves nothing else.
    numstat = subprocess.run(
        ["git", "diff", "--numstat", "HEAD~1", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.split()
    assert numstat == ["3", "0", "Pulumi.prod-us-east-1.yaml", "3", "0", "Pulumi.prod-us-west-2.yaml"]


def test_bootstrap_again_creates_nothing_and_commits_nothing(
    repo: Path, moto_server: MotoServer, route53: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bootstrap", "health-checks", "--stack", "prod-us-west-2", "--stacks-dir", str(repo),
            "--aws-endpoint-url", moto_server.endpoint_url, "--commit"]  # fmt: skip
    assert run(argv, capsys)[0] == 0
    before = (health_checks(route53), git_log(repo), (repo / "Pulumi.prod-us-west-2.yaml").read_text())

    code, out, _ = run(argv, capsys)

    assert code == 0
    assert "stack configs already name these health checks" in out
    after = (health_checks(route53), git_log(repo), (repo / "Pulumi.prod-us-west-2.yaml").read_text())
    assert after == before


def test_bootstrap_without_probe_urls_is_one_line_and_exit_2(
    repo: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo / "Pulumi.prod-us-east-1.yaml"
    path.write_text(
        path.read_text().replace("      us-west-2: https://us-west-2", "      eu-west-9: https://x")
    )
    argv = ["bootstrap", "health-checks", "--stack", "prod-us-east-1", "--stacks-dir", str(repo),
            "--aws-endpoint-url", moto_server.endpoint_url]  # fmt: skip

    code, _, err = run(argv, capsys)

    assert code == 2
    assert err.strip().splitlines() == [
        "rollout: error: --stack prod-us-east-1: failover.probeUrls has no URL for us-west-2 "
        "in Pulumi.prod-us-east-1.yaml"
    ]


def test_the_drills_records_reference_the_bootstrapped_checks(
    regions: Regions, route53: Any, tmp_path: Path, bucket: str
) -> None:
    target = regions.target(tmp_path, bucket)
    ids = ensure_health_checks(route53, target.service, {r: e.probe_url for r, e in target.regions.items()})

    ensure_failover_records(route53, target, PRIMARY)

    records = FailoverDns(route53, regions.zone, regions.record).records()
    assert {region: record.health_check_id for region, record in records.items()} == ids


def test_a_loopback_probe_url_is_checked_by_address() -> None:
    assert health_check_config("http://127.0.0.1:8081/healthz") == {
        "Type": "HTTP",
        "IPAddress": "127.0.0.1",
        "Port": 8081,
        "ResourcePath": "/healthz",
        "RequestInterval": 10,
        "FailureThreshold": 3,
    }
