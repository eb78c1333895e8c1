"""BackupSchedule: Velero Schedules per backup objective and the hourly pg_dump CronJob."""

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


def test_the_database_is_dumped_to_s3_every_hour(plan):
    """The dump is `rollout drill backup` (pg_dump plus the manifest the restore drill checks), to
    the bucket and prefix the restore drill reads: the command line is parsed by the real CLI."""
    from click import Context

    from rollout_policies.cli.main import cli

    cronjob = deploy(settings(backup={"bucket": "mh-backups"}), plan).one("CronJob", f"{SERVICE}-pg-dump")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert cronjob["spec"]["schedule"] == "15 * * * *"
    assert container["command"][:3] == ["rollout", "drill", "backup"]
    backup = cli.get_command(Context(cli), "drill").get_command(Context(cli), "backup")  # type: ignore[union-attr]
    parsed = backup.make_context("backup", [*container["command"][3:], "--dsn", "postgresql://x"])
    assert parsed.params["bucket"] == "mh-backups"
    assert parsed.params["prefix"] == f"pg-dumps/{SERVICE}"


def test_the_dump_reads_the_database_url_from_a_secret(plan):
    cronjob = deploy(settings(backup={"databaseSecret": "db"}), plan).one("CronJob", f"{SERVICE}-pg-dump")
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    # DRILL_BACKUP_DSN is the variable `rollout drill backup --dsn` reads (its envvar).
    assert env[0] == {"name": "DRILL_BACKUP_DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}


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
