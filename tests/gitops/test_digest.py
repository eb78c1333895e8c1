"""The digest's data: decisions and incidents of the period from git, KPIs from one evaluation, risks
and what is due. Against a real bare remote, as the other gitops tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gitops_fixtures import T0, Remote, healthy

from rollout_policies.gitops import digest
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.model import Plan
from runbooks.report import DrillReport, write_report


def sources(clone: Path, plan: Plan, evidence: object, drills: Path) -> digest.Sources:
    return digest.Sources(GitOps(repo=GitRepo(clone), plan=plan, actor="oncall@laptop"), evidence, drills)  # type: ignore[arg-type]


def test_the_periods_decisions_and_incidents_come_from_git(
    remote: Remote, plan: Plan, tmp_path: Path
) -> None:
    clone = remote.clone("a")
    ops = GitOps(repo=GitRepo(clone), plan=plan, actor="oncall@laptop")
    ops.pause(["prod-us"], reason="waiting for the iOS fix", now=T0 + timedelta(hours=1))
    ops.resume(["prod-us"], reason="fixed", now=T0 + timedelta(hours=2))
    ops.rollback(["prod-us"], reason="crash spike", now=T0 + timedelta(days=2))
    now = T0 + timedelta(days=2, hours=1)

    daily = digest.gather(
        sources(clone, plan, healthy(), tmp_path), ["prod-us"], period=digest.Period.DAILY, now=now
    )
    weekly = digest.gather(
        sources(clone, plan, healthy(), tmp_path), ["prod-us"], period=digest.Period.WEEKLY, now=now
    )

    assert [d["decision"] for d in daily["decisions"]] == ["rollback"]
    assert [d["decision"] for d in weekly["decisions"]] == ["pause", "resume", "rollback"]
    (incident,) = weekly["incidents"]
    assert (incident["stacks"], incident["reason"], incident["at"]) == (
        ["prod-us"],
        "crash spike",
        "2026-11-22T09:00:00Z",
    )
    assert weekly["title"] == "Weekly executive report"
    text = digest.markdown(weekly)
    assert "## Incidents" in text and "rollback of prod-us: crash spike" in text


def test_kpis_risks_and_what_is_due(remote: Remote, plan: Plan, tmp_path: Path) -> None:
    clone = remote.clone("a")
    now = T0 + timedelta(hours=1, minutes=30)  # the step started at T0 and baked its hour
    drill = DrillReport(drill="backup-restore", executed=True, started_at=T0 - timedelta(days=40),
                        finished_at=T0 - timedelta(days=40), steps=(), objectives=())  # fmt: skip
    write_report(drill, tmp_path / "drills")

    data = digest.gather(
        sources(clone, plan, healthy(), tmp_path / "drills"), ["prod-us"], period=digest.Period.DAILY, now=now
    )

    (row,) = data["stacks"]
    assert (row["stage"], row["step"], row["candidate_weight"], row["decision"]) == (
        "limited",
        0,
        2,
        "promote",
    )
    assert [(k["gate"], k["verdict"]) for k in row["kpis"]] == [
        ("Technical Metrics: Crashes/Exceptions", "meets_target")
    ]
    assert data["kpis"] == {"gates": 1, "on_target": 1, "share": 100.0}
    assert row["next_promotion_at"] == "2026-11-20T10:30:00Z"  # baked: now
    assert data["risks"] == ["drill backup-restore: overdue since 2026-11-10T09:00:00Z"]
    assert [item["what"] for item in data["next"]] == [
        "prod-us: earliest promotion from limited step 0",
        "drill backup-restore due",
    ]


def test_a_gate_off_target_is_a_risk_with_its_reason(remote: Remote, plan: Plan, tmp_path: Path) -> None:
    data = digest.gather(
        sources(remote.clone("a"), plan, healthy(1.5), tmp_path), ["prod-us"], period=digest.Period.DAILY,
        now=T0 + timedelta(hours=1, minutes=30),
    )  # fmt: skip
    (risk,) = data["risks"]
    assert risk.startswith("prod-us (limited step 0): 1 of 1 gates not on target (1 between); first: ")
    head, lines = digest.slack_lines(data)
    assert head.startswith("*Daily stand-up digest* markethub-mobile-test: 0/1 gates on target")
    assert f"risk: {risk}" in lines
