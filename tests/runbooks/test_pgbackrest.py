"""pgBackRest's settings from the plan, and the findings the restore drill reads from backup.info (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import BackupObjective, Objectives
from runbooks.pgbackrest import (
    BackupSet,
    Repository,
    RetentionError,
    age_findings,
    archive_command,
    chain_findings,
    parse_backup_info,
    repository_env,
    retention_options,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FULL = "20261207-010000F"
INCR1 = "20261207-010000F_20261207-101500I"
INCR2 = "20261207-010000F_20261207-111500I"


def objectives(*backups: tuple[str, str, str]) -> Objectives:
    plan = load_plan(DEFAULT_PLAN)
    return plan.objectives.model_copy(
        update={
            "backups": tuple(
                BackupObjective.model_validate({"kind": kind, "every": every, "retention": retention})
                for kind, every, retention in backups
            )
        }
    )


def backup_set(label: str, stopped: datetime, references: tuple[str, ...] = ()) -> BackupSet:
    return BackupSet(
        label=label,
        type="full" if label.endswith("F") else "incr",
        started_at=stopped - timedelta(minutes=1),
        stopped_at=stopped,
        prior=references[-1] if references else None,
        references=references,
    )


CHAIN = (
    backup_set(FULL, NOW - timedelta(hours=11)),
    backup_set(INCR1, NOW - timedelta(hours=1, minutes=45), (FULL,)),
    backup_set(INCR2, NOW - timedelta(minutes=45), (FULL, INCR1)),
)


def test_the_seed_plans_retention_keeps_fulls_30_days_by_time_and_wal_for_every_full() -> None:
    assert retention_options(load_plan(DEFAULT_PLAN).objectives) == {
        "repo1-retention-full-type": "time",
        "repo1-retention-full": "30",
        "repo1-retention-archive-type": "full",
    }


def test_a_full_retention_of_part_of_a_day_rounds_up_to_whole_days() -> None:
    plan = objectives(("full", "6h", "36h"))
    assert retention_options(plan)["repo1-retention-full"] == "2"


def test_a_plan_without_a_full_backup_cannot_be_retained() -> None:
    with pytest.raises(RetentionError, match="no full backup objective"):
        retention_options(objectives(("incremental", "1h", "7d")))


def test_incrementals_kept_longer_than_their_full_are_an_error() -> None:
    with pytest.raises(RetentionError, match="incremental retention 60d exceeds the full retention 30d"):
        retention_options(objectives(("incremental", "1h", "60d"), ("full", "1d", "30d")))


def test_a_retention_shorter_than_the_interval_is_an_error() -> None:
    with pytest.raises(RetentionError, match="full retention 12h00m is shorter than its interval 1d"):
        retention_options(objectives(("full", "1d", "12h")))


def test_aws_s3_is_verified_and_a_loopback_endpoint_is_path_style_without_tls_checks() -> None:
    plan = load_plan(DEFAULT_PLAN).objectives
    aws = repository_env(Repository("b", "/pgbackrest/svc", "us-west-2", "svc"), plan)
    local = repository_env(
        Repository("b", "pgbackrest/svc", "us-east-1", "svc", "https://127.0.0.1:8443"), plan
    )

    assert aws["PGBACKREST_REPO1_S3_ENDPOINT"] == "s3.us-west-2.amazonaws.com"
    assert "PGBACKREST_REPO1_STORAGE_VERIFY_TLS" not in aws
    assert aws["PGBACKREST_REPO1_PATH"] == local["PGBACKREST_REPO1_PATH"] == "/pgbackrest/svc"
    assert aws["PGBACKREST_REPO1_RETENTION_FULL"] == "30"
    assert (local["PGBACKREST_REPO1_S3_ENDPOINT"], local["PGBACKREST_REPO1_STORAGE_PORT"]) == (
        "127.0.0.1",
        "8443",
    )
    assert local["PGBACKREST_REPO1_STORAGE_VERIFY_TLS"] == "n"
    assert local["PGBACKREST_REPO1_S3_URI_STYLE"] == "path"


def test_plain_http_endpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="https only"):
        repository_env(
            Repository("b", "p", "us-east-1", "svc", "http://127.0.0.1:5000"),
            load_plan(DEFAULT_PLAN).objectives,
        )


def test_archive_command_pushes_each_segment_to_the_stanza() -> None:
    assert archive_command("svc") == "pgbackrest --stanza=svc archive-push %p"


def test_backup_info_is_read_oldest_first_with_each_sets_references() -> None:
    def entry(stop: int, kind: str, reference: list[str] | None) -> str:
        data = {"backup-type": kind, "backup-timestamp-start": stop - 60, "backup-timestamp-stop": stop,
                "backup-prior": reference[-1] if reference else None, "backup-reference": reference,
                "backup-archive-stop": "000000010000000000000007"}  # fmt: skip
        return json.dumps(data)

    text = "\n".join([
        "[backrest]", "backrest-format=5", "", "[backup:current]",
        f"{INCR1}={entry(1796700000, 'incr', [FULL])}",
        f"{FULL}={entry(1796600000, 'full', None)}",
        "", "[db]", "db-id=1",
    ])  # fmt: skip

    sets = parse_backup_info(text)

    assert [s.label for s in sets] == [FULL, INCR1]
    assert sets[1].references == (FULL,)
    assert sets[1].stopped_at == datetime.fromtimestamp(1796700000, UTC)
    assert sets[1].archive_stop == "000000010000000000000007"


def test_a_complete_chain_has_no_findings() -> None:
    assert chain_findings(CHAIN, {FULL, INCR1, INCR2}) == []


def test_a_deleted_incremental_breaks_the_chain_of_the_newest_backup() -> None:
    assert chain_findings(CHAIN, {FULL, INCR2}) == [
        f"backup chain broken: incremental backup {INCR1} is gone from the repository "
        f"(no {INCR1}/backup.manifest), and the newest backup {INCR2} needs it"
    ]


def test_a_deleted_full_is_named_as_a_full() -> None:
    assert chain_findings(CHAIN, {INCR1, INCR2})[0].startswith(f"backup chain broken: full backup {FULL}")


def test_a_set_backup_info_no_longer_lists_is_a_finding() -> None:
    assert chain_findings((CHAIN[0], CHAIN[2]), {FULL, INCR1, INCR2}) == [
        f"backup chain broken: {INCR2} needs {INCR1}, which backup.info no longer lists"
    ]


def test_incrementals_without_their_full_are_a_finding() -> None:
    assert chain_findings(CHAIN[1:], {INCR1, INCR2}) == [
        "no full backup in the repository: incrementals alone cannot be restored"
    ]


def test_an_empty_repository_is_a_finding() -> None:
    assert chain_findings((), set()) == ["no backup in the repository (backup.info lists none)"]


def test_fresh_backups_have_no_age_findings() -> None:
    assert age_findings(CHAIN, load_plan(DEFAULT_PLAN).objectives, NOW) == []


def test_an_incremental_older_than_the_plan_allows_is_a_finding() -> None:
    later = NOW + timedelta(minutes=40)  # the newest backup is now 1h25m old; hourly allows 1h15m

    assert age_findings(CHAIN, load_plan(DEFAULT_PLAN).objectives, later) == [
        f"newest incremental backup {INCR2} finished 1h25m ago; the plan takes one every 1h00m "
        "(allowed: 1h15m)"
    ]


def test_a_full_older_than_the_plan_allows_is_a_finding_even_with_fresh_incrementals() -> None:
    old_full = (backup_set(FULL, NOW - timedelta(days=2)), *CHAIN[1:])

    findings = age_findings(old_full, load_plan(DEFAULT_PLAN).objectives, NOW)

    assert findings == [
        f"newest full backup {FULL} finished 2d ago; the plan takes one every 1d (allowed: 30h00m)"
    ]
