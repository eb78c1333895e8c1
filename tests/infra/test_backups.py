"""BackupSchedule: Velero Schedules per backup objective and pgBackRest's full and incremental CronJobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from infra_helpers import settings
from pulumi_render import deploy

from infra.schedule import cron_every, go_duration

SERVICE = "markethub-mobile"


def _schedules(deployed):
    return {s["metadata"]["name"]: s["spec"] for s in deployed.of_kind("Schedule")}


def test_an_hourly_incremental_and_a_daily_full_velero_schedule(plan):
    schedules = _schedules(deploy(settings(), plan))
    assert schedules[f"{SERVICE}-incremental-1h"]["schedule"] == "0 * * * *"
    assert schedules[f"{SERVICE}-full-1d"]["schedule"] == "30 2 * * *"


def test_each_schedule_keeps_backups_for_its_objectives_retention(plan):
    schedules = _schedules(deploy(settings(), plan))
    assert schedules[f"{SERVICE}-incremental-1h"]["template"]["ttl"] == "168h0m0s"
    assert schedules[f"{SERVICE}-full-1d"]["template"]["ttl"] == "720h0m0s"


def test_schedules_back_up_the_service_namespace_into_the_storage_location(plan):
    custom = settings(namespace="shop", backup={"storageLocation": "s3-east"})
    template = _schedules(deploy(custom, plan))[f"{SERVICE}-full-1d"]["template"]
    assert template["includedNamespaces"] == ["shop"]
    assert template["storageLocation"] == "s3-east"


def test_incremental_uses_file_system_backup_and_full_takes_snapshots(plan):
    schedules = _schedules(deploy(settings(), plan))
    assert schedules[f"{SERVICE}-incremental-1h"]["template"]["defaultVolumesToFsBackup"] is True
    assert schedules[f"{SERVICE}-full-1d"]["template"]["snapshotVolumes"] is True


def _pod(cronjob):
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_pgbackrest_takes_a_full_backup_daily_and_an_incremental_hourly(plan):
    deployed = deploy(settings(), plan)
    full = deployed.one("CronJob", f"{SERVICE}-pgbackrest-full-1d")
    incremental = deployed.one("CronJob", f"{SERVICE}-pgbackrest-incremental-1h")
    assert full["spec"]["schedule"] == "0 1 * * *"
    assert incremental["spec"]["schedule"] == "15 * * * *"
    assert _pod(full)["containers"][0]["command"][:5] == ["rollout", "drill", "backup", "--type", "full"]
    assert _pod(incremental)["containers"][0]["command"][3:5] == ["--type", "incremental"]


def test_the_backup_command_parses_and_names_the_repository_the_drills_read(plan):
    """The command line through the real CLI parser: `rollout drill backup` runs pgbackrest."""
    from click import Context

    from rollout_policies.cli.main import cli

    cronjob = deploy(settings(backup={"bucket": "mh-backups"}), plan).one(
        "CronJob", f"{SERVICE}-pgbackrest-incremental-1h"
    )
    command = _pod(cronjob)["containers"][0]["command"]
    backup = cli.get_command(Context(cli), "drill").get_command(Context(cli), "backup")  # type: ignore[union-attr]
    parsed = backup.make_context("backup", command[3:])
    assert parsed.params["kind"] == "incremental"
    assert parsed.params["bucket"] == "mh-backups"
    assert parsed.params["prefix"] == f"pgbackrest/{SERVICE}"


def test_the_backups_keep_what_the_plans_objectives_ask_for(plan):
    """30 days of fulls by time (the full objective); incrementals go with their full, so the
    7-day incremental objective is kept at least that long."""
    env = _env(
        _pod(deploy(settings(), plan).one("CronJob", f"{SERVICE}-pgbackrest-full-1d"))["containers"][0]
    )
    assert env["PGBACKREST_REPO1_RETENTION_FULL_TYPE"] == "time"
    assert env["PGBACKREST_REPO1_RETENTION_FULL"] == "30"
    assert env["PGBACKREST_REPO1_RETENTION_ARCHIVE_TYPE"] == "full"


def test_the_repository_is_the_bucket_and_prefix_the_drills_read(plan):
    from infra.settings import drill_options

    stack = settings(backup={"bucket": "mh-backups"})
    cronjob = deploy(stack, plan).one("CronJob", f"{SERVICE}-pgbackrest-incremental-1h")
    env = _env(_pod(cronjob)["containers"][0])
    options = drill_options(stack, SERVICE)
    assert env["PGBACKREST_REPO1_S3_BUCKET"] == options.bucket == "mh-backups"
    assert env["PGBACKREST_REPO1_PATH"] == "/" + options.prefix == f"/pgbackrest/{SERVICE}"
    assert env["PGBACKREST_STANZA"] == SERVICE
    assert env["PGBACKREST_REPO1_S3_ENDPOINT"] == "s3.us-east-1.amazonaws.com"
    assert env["PGBACKREST_REPO1_S3_KEY_TYPE"] == "web-id"


def test_a_database_host_is_reached_through_its_pgbackrest_tls_server(plan):
    stack = settings(backup={"databaseHost": "db-1.internal", "databaseTlsSecret": "pg-tls"})
    pod = _pod(deploy(stack, plan).one("CronJob", f"{SERVICE}-pgbackrest-full-1d"))
    env = _env(pod["containers"][0])
    assert (env["PGBACKREST_PG1_HOST"], env["PGBACKREST_PG1_HOST_TYPE"]) == ("db-1.internal", "tls")
    assert env["PGBACKREST_PG1_HOST_CERT_FILE"].startswith(
        pod["containers"][0]["volumeMounts"][0]["mountPath"]
    )
    assert pod["volumes"] == [{"name": "pgbackrest-tls", "secret": {"secretName": "pg-tls"}}]


def test_s3_keys_come_from_a_secret_when_the_stack_names_one(plan):
    stack = settings(backup={"s3CredentialsSecret": "s3"})
    env = _env(_pod(deploy(stack, plan).one("CronJob", f"{SERVICE}-pgbackrest-full-1d"))["containers"][0])
    assert env["PGBACKREST_REPO1_S3_KEY"] == {"secretKeyRef": {"name": "s3", "key": "key"}}
    assert "PGBACKREST_REPO1_S3_KEY_TYPE" not in env


def test_backups_can_be_turned_off_for_a_local_stack(plan):
    deployed = deploy(settings("local", backup={"enabled": False}), plan)
    assert deployed.of_kind("Schedule") == []


@pytest.mark.parametrize(
    ("every", "cron"),
    [
        (timedelta(minutes=15), "*/15 * * * *"),
        (timedelta(hours=1), "0 * * * *"),
        (timedelta(hours=6), "0 */6 * * *"),
        (timedelta(days=1), "0 0 * * *"),
        (timedelta(weeks=1), "0 0 * * 0"),
        (timedelta(hours=5), "@every 5h0m0s"),
    ],
)
def test_cron_from_plan_interval(every, cron):
    assert cron_every(every) == cron


def test_go_duration_for_velero_ttl():
    assert go_duration(timedelta(days=7, minutes=30)) == "168h30m0s"
