"""DrillSchedule: CronJobs for the DR drills, active in the primary region only."""

from __future__ import annotations

from infra_helpers import settings
from pulumi_render import deploy

SERVICE = "markethub-mobile"


def _drill(deployed, drill):
    return deployed.one("CronJob", f"{SERVICE}-drill-{drill}")


def test_drills_run_weekly_from_the_plan(plan):
    deployed = deploy(settings(), plan)
    assert _drill(deployed, "backup-restore")["spec"]["schedule"] == "0 3 * * 0"
    assert _drill(deployed, "region-failover")["spec"]["schedule"] == "0 6 * * 0"


FAILOVER = {
    "hostname": "api.markethub.example",
    "zone": "markethub.example",
    "probeUrls": {"us-east-1": "https://use1.example/healthz", "us-west-2": "https://usw2.example/healthz"},
}


def _container(job):
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def _parse(command):
    """The CronJob's command line as the real CLI parses it: an unknown flag fails here (exit 2)."""
    from click import Context

    from rollout_policies.cli.main import cli

    assert command[:2] == ["rollout", "drill"]
    group = cli.get_command(Context(cli), "drill")
    sub = group.get_command(Context(group), command[2])  # type: ignore[union-attr]
    return sub.make_context(command[2], list(command[3:])).params


def test_drills_run_the_rollout_drill_command_with_execute(plan):
    job = _drill(deploy(settings(failover=FAILOVER), plan), "region-failover")
    command = _container(job)["command"]
    assert command[:4] == ["rollout", "drill", "region-failover", "--execute"]
    params = _parse(command)
    assert params["execute"] is True


def test_the_cronjob_passes_what_rollout_drill_stack_reads_from_the_stack_file(plan, tmp_path):
    """The CronJob's flags and `rollout drill --stack` come from one function of the stack config."""
    from infra.settings import drill_options

    stack = settings(failover=FAILOVER, backup={"bucket": "mh-backups"})
    params = _parse(_container(_drill(deploy(stack, plan), "region-failover"))["command"])
    options = drill_options(stack, SERVICE)
    assert params["zone"] == "markethub.example." == options.zone
    assert params["record"] == "api.markethub.example." == options.record
    assert params["bucket"] == "mh-backups" == options.bucket
    assert params["prefix"] == f"pgbackrest/{SERVICE}" == options.prefix
    assert sorted(params["endpoints"]) == [
        "us-east-1=https://use1.example/healthz",
        "us-west-2=https://usw2.example/healthz",
    ]


def test_the_restore_drill_reads_the_database_from_a_secret(plan):
    container = _container(_drill(deploy(settings(backup={"databaseSecret": "db"}), plan), "backup-restore"))
    assert {
        "name": "DRILL_SOURCE_DSN",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
    } in container["env"]


def test_the_restore_drill_reads_the_repository_the_backup_cronjobs_write(plan):
    deployed = deploy(settings(backup={"bucket": "mh-backups"}), plan)
    drill = {e["name"]: e.get("value") for e in _container(_drill(deployed, "backup-restore"))["env"]}
    full = deployed.one("CronJob", f"{SERVICE}-pgbackrest-full-1d")
    backup = {
        e["name"]: e.get("value")
        for e in full["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    repository = {k: v for k, v in backup.items() if not k.startswith("PGBACKREST_PG1_")}
    assert repository.items() <= drill.items()
    assert drill["PGBACKREST_REPO1_S3_BUCKET"] == "mh-backups"
    assert not any(name.startswith("PGBACKREST_PG1_") for name in drill)


def test_drill_reports_are_pushed_when_the_stack_names_a_repository(plan):
    stack = settings(drills={"reportsRepository": "https://github.com/markethub/rollout.git"})
    env = {e["name"]: e for e in _container(_drill(deploy(stack, plan), "backup-restore"))["env"]}
    assert env["ROLLOUT_REPORTS_GIT_URL"]["value"] == "https://github.com/markethub/rollout.git"
    assert env["ROLLOUT_GIT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "markethub-rollout-git",
        "key": "token",
    }


def test_drills_are_suspended_in_the_secondary_region(plan):
    west = settings("prod-us-west-2", region="us-west-2", regionRole="secondary")
    assert _drill(deploy(west, plan), "backup-restore")["spec"]["suspend"] is True


def test_drills_are_active_in_the_primary_region(plan):
    assert _drill(deploy(settings(), plan), "backup-restore")["spec"]["suspend"] is False


def test_a_stack_can_set_its_own_drill_schedule(plan):
    job = _drill(deploy(settings(drills={"schedule": "0 4 * * 2"}), plan), "backup-restore")
    assert job["spec"]["schedule"] == "0 4 * * 2"


def test_the_failover_cronjob_names_the_route_and_each_regions_cluster(plan):
    """A pod has no other region's stack file: the service (HTTPRoute, flags ConfigMap) and each
    region's kubeconfig context go in as flags, from failover.kubeContexts."""
    contexts = {"us-east-1": "prod-us-east-1", "us-west-2": "prod-us-west-2"}
    stack = settings(failover={**FAILOVER, "kubeContexts": contexts})
    params = _parse(_container(_drill(deploy(stack, plan), "region-failover"))["command"])
    assert params["service"] == SERVICE
    assert sorted(params["kube_contexts"]) == ["us-east-1=prod-us-east-1", "us-west-2=prod-us-west-2"]
