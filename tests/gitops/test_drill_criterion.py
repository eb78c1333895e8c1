"""A drill criterion through `rollout promote`: the stage waits for a passed drill report committed
under reports/drills/ of the rollout repository, on a real bare remote (``--dry-run``: no PR)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from gitops_fixtures import PLAN, Remote, git, run

from rollout_policies.gitops.stack_config import render_state, state_from_text
from rollout_policies.state import Colour, RolloutState
from runbooks.report import DrillReport, ObjectiveRecord, StepRecord, StepStatus, write_report

CONFIG = "Pulumi.prod-us.yaml"
NOW = "2026-11-25T10:30:00Z"
METRICS = "observed_at: 2026-11-25T10:29:00Z\nmetrics:\n  crash_rate: {value: 0.4}\n"


@pytest.fixture
def clone(remote: Remote, tmp_path: Path) -> Path:
    """prod-us at the limited stage's last step for days, the plan's feedback signed off below."""
    work = remote.clone("work")
    text = (work / CONFIG).read_text()
    state = state_from_text(text, CONFIG)
    at_last = RolloutState.model_validate(
        {**state.model_dump(), "step": 1, "weights": {Colour.BLUE: 95, Colour.GREEN: 5}}
    )
    (work / CONFIG).write_text(render_state(text, at_last, CONFIG))
    git(work, "commit", "-q", "-am", "test: prod-us at limited step 1")
    git(work, "push", "-q", "origin", "main")
    return work


def plan_file(tmp_path: Path) -> Path:
    data = copy.deepcopy(PLAN)
    data["stages"][0]["go"].append(
        {"id": "failover", "text": "Multi-region failover testing", "kind": "drill",
         "drill": "region-failover", "window": "7d"}
    )  # fmt: skip
    tables = []
    for stage in data["stages"]:
        tables += stage.get("tables", [])
        stage["tables"] = [t["name"] for t in stage.get("tables", [])]
    data["tables"] = tables
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def promote(clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(METRICS)
    code, out, err = run(
        ["promote", "--plan", str(plan_file(tmp_path)), "--repo", str(clone), "--stack", "prod-us",
         "--metrics-file", str(metrics), "--now", NOW, "--signoff", "feedback", "--dry-run", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, out + err
    (result,) = json.loads(out)
    return dict(result)


def commit_drill(clone: Path, status: StepStatus, started: str) -> None:
    moment = __import__("datetime").datetime.fromisoformat(started)
    report = DrillReport(
        drill="region-failover",
        executed=True,
        started_at=moment,
        finished_at=moment,
        steps=(StepRecord(name="dns-failover", status=status, started_at=moment, seconds=1.0),),
        objectives=(ObjectiveRecord(name="time to recovery (RTO)", limit_seconds=1800, measured_seconds=3),),
    )
    paths = write_report(report, clone / "reports" / "drills")
    git(clone, "add", *[str(p.relative_to(clone)) for p in paths])
    git(clone, "commit", "-q", "-m", f"drill region-failover: {status.value}")


def test_the_stage_holds_until_a_passed_failover_drill_is_committed(
    remote: Remote, clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = promote(clone, tmp_path, capsys)
    assert (held["result"], held["decision"]) == ("held", "hold"), held
    assert "no region-failover drill report" in json.dumps(held)

    commit_drill(clone, StepStatus.FAILED, "2026-11-24T06:30:00+00:00")
    failed = promote(clone, tmp_path, capsys)
    assert failed["result"] == "held"
    assert "region-failover drill of 2026-11-24T06:30:00Z: failed" in json.dumps(failed)

    commit_drill(clone, StepStatus.PASSED, "2026-11-25T06:30:00+00:00")
    passed = promote(clone, tmp_path, capsys)
    assert (passed["result"], passed["decision"], passed["branch"]) == (
        "dry-run",
        "promote",
        "rollout/prod-us/full-step-0",
    )
