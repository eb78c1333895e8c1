"""`rollout drill ...` end to end through the command line: real PostgreSQL, moto S3 and Route 53, git.

moto stands in for AWS (the only stand-in allowed); the region endpoints are loopback stand-ins
(``devenv.health_standin``) because nothing serves HTTP on kwok's fake nodes. The plan is the packaged one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from drill_helpers import PRIMARY, SECONDARY, Regions, aws, put_backup_sets, run

from devenv.services import MotoServer

pytestmark = pytest.mark.services


def test_a_restore_drill_dry_run_checks_the_repository_and_commits_its_report(
    moto_server: MotoServer,
    unique: str,
    git_repo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The repository is written as pgBackRest writes it; the restore itself is in the e2e test."""
    bucket = f"cli-{unique}"
    s3 = aws("s3", moto_server)
    s3.create_bucket(Bucket=bucket)
    # The packaged plan: its service is the stanza, pgbackrest/<service> the default repository path.
    labels = put_backup_sets(
        s3, bucket, 10, 0.5, stanza="markethub-mobile", prefix="pgbackrest/markethub-mobile"
    )
    code, out, err = run(
        ["drill", "backup-restore", "--aws-endpoint-url", moto_server.endpoint_url, "--bucket", bucket,
         "--report-dir", str(git_repo / "drills"), "--commit"],
        capsys,
    )  # fmt: skip

    assert code == 0, out + err
    assert "backup-restore: dry-run" in out
    data = json.loads(sorted((git_repo / "drills" / "backup-restore").glob("*.json"))[0].read_text())
    assert labels[1] in data["steps"][0]["detail"]
    log = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=git_repo, capture_output=True, text=True)
    assert log.stdout.strip() == "drill backup-restore: dry-run"


def test_a_failover_drill_without_the_secondarys_kubeconfig_fails_in_preflight_with_exit_1(
    regions: Regions,
    moto_server: MotoServer,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: each step's detail on one line
    code, out, _ = run(
        ["drill", "region-failover", "--execute", "--aws-endpoint-url", moto_server.endpoint_url,
         "--zone", regions.zone, "--record", regions.record, "--ensure-records",
         "--endpoint", f"{PRIMARY}={regions.primary.url}",
         "--endpoint", f"{SECONDARY}={regions.secondary.url}",
         "--report-dir", str(tmp_path / "drills")],
        capsys,
    )  # fmt: skip

    assert code == 1
    assert "cannot check the secondary us-west-2" in out
    assert "preflight failed: nothing was changed" in out
    assert regions.secondary.requests == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["drill", "region-failover", "--endpoint", "us-east-1"], "--endpoint: expected REGION=VALUE"),
        (
            ["drill", "region-failover", "--endpoint", "us-east-1=http://127.0.0.1:1/"],
            "--endpoint: no probe URL",
        ),
        (["drill", "backup-restore", "--plan", "/nonexistent/plan.yaml"], "/nonexistent/plan.yaml"),
        (["drill", "backup-restore", "--execute"], "--source-dsn"),
        (["drill", "region-failover", "--inject-fault", "nope", "--endpoint", "a=b"], "--inject-fault"),
        (["drill", "backup", "--type", "weekly"], "--type: 'weekly' is not one of full, incremental"),
        (["drill", "backup", "--type", "full"], "pgBackRest speaks S3 over https only"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([*argv, "--aws-endpoint-url", moto_server.endpoint_url], capsys)

    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_json_prints_the_report_as_written_with_its_files(
    moto_server: MotoServer, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run against an empty bucket: the drill fails at its first step, and says so as JSON."""
    code, out, _ = run(
        ["drill", "backup-restore", "--aws-endpoint-url", moto_server.endpoint_url,
         "--bucket", f"json-{unique}", "--report-dir", str(tmp_path / "drills"), "--json"],
        capsys,
    )  # fmt: skip
    data = json.loads(out)  # nothing but the JSON on stdout
    json_file, md_file, html_file = map(Path, data.pop("report_files"))
    assert (data.pop("committed"), data.pop("pushed")) == (None, None)
    assert data == json.loads(json_file.read_text()) and md_file.is_file()
    assert html_file == json_file.with_suffix(".html") and "Verdict: FAILED" in html_file.read_text()
    assert (code, data["drill"], data["executed"], data["verdict"]) == (1, "backup-restore", False, "failed")
    assert data["steps"][0]["name"] == "check-backup-chain" and data["steps"][0]["status"] == "failed"
