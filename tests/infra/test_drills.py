"""DrillSchedule: CronJobs for the DR drills, active in the primary region only."""

from __future__ import annotations

from infra_helpers import deploy, settings

SERVICE = "markethub-mobile"


def _drill(deployed, drill):
    return deployed.one("CronJob", f"{SERVICE}-drill-{drill}")


def test_drills_run_weekly_from_the_plan(plan):
    deployed = deploy(settings(), plan)
    assert _drill(deployed, "backup-restore")["spec"]["schedule"] == "0 3 * * 0"
    assert _drill(deployed, "region-failover")["spec"]["schedule"] == "0 6 * * 0"


def test_drills_run_the_rollout_drill_command_with_execute(plan):
    job = _drill(deploy(settings(), plan), "region-failover")
    command = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["rollout", "drill", "region-failover", "--execute"]
    assert command[-2:] == ["--stack", "prod-us-east-1"]


def test_drills_are_suspended_in_the_secondary_region(plan):
    west = settings("prod-us-west-2", region="us-west-2", regionRole="secondary")
    assert _drill(deploy(west, plan), "backup-restore")["spec"]["suspend"] is True


def test_drills_are_active_in_the_primary_region(plan):
    assert _drill(deploy(settings(), plan), "backup-restore")["spec"]["suspend"] is False


def test_a_stack_can_set_its_own_drill_schedule(plan):
    job = _drill(deploy(settings(drills={"schedule": "0 4 * * 2"}), plan), "backup-restore")
    assert job["spec"]["schedule"] == "0 4 * * 2"
