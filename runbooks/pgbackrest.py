"""pgBackRest as the plan asks for it: settings, retention from the backup objectives, the backup chain.

Pure: no process, no network. ``repository_env`` is the whole pgBackRest configuration as its
``PGBACKREST_*`` environment variables (the CronJobs, the archive_command's server, the drill and
the rig all take the same map), ``retention_options`` turns the plan's backup objectives into
pgBackRest's retention, and ``parse_backup_info`` / ``chain_findings`` / ``age_findings`` read what a
repository's ``backup.info`` says and say what is wrong with it, one line per finding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from rollout_policies.plan.model import BackupObjective, Objectives

# The plan's kinds as pgBackRest's --type values.
BACKUP_TYPES = {"full": "full", "incremental": "incr"}
# A backup may finish this share of its interval after the interval ends (the CronJob's minute
# offset and the backup's own run time) before the drill calls it older than the plan allows.
SCHEDULE_GRACE = 0.25
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class RetentionError(ValueError):
    """The plan's backup objectives cannot be expressed as pgBackRest retention."""


@dataclass(frozen=True)
class Repository:
    """Where the backups live: an S3 bucket and a path in it, one pgBackRest stanza per database."""

    bucket: str
    path: str  # e.g. /pgbackrest/markethub-mobile
    region: str
    stanza: str
    endpoint: str = ""  # empty: AWS S3 of ``region``; https://127.0.0.1:PORT for moto in the rig

    @property
    def backup_prefix(self) -> str:
        """The S3 key prefix of the backup sets (``<path>/backup/<stanza>/``)."""
        return f"{self.path.strip('/')}/backup/{self.stanza}/"

    @property
    def backup_info_key(self) -> str:
        return f"{self.backup_prefix}backup.info"


def objective_of(objectives: Objectives, kind: str) -> BackupObjective | None:
    """The plan's most frequent backup objective of a kind (``full`` / ``incremental``)."""
    found = [o for o in objectives.backups if o.kind == kind]
    return min(found, key=lambda o: o.every, default=None)


def retention_options(objectives: Objectives) -> dict[str, str]:
    """pgBackRest retention from the plan's backup objectives.

    Full backups are kept by time for the full objective's retention (``repo1-retention-full-type=time``,
    in whole days, rounded up). pgBackRest expires an incremental only with the full it depends on, so
    incrementals are kept at least as long as the plan asks whenever the full retention is at least the
    incremental one; a plan asking for the opposite cannot be met and is an error. WAL is kept for
    every retained backup (``repo1-retention-archive-type=full``), so the point-in-time window is the
    full retention.
    """
    full = max((o for o in objectives.backups if o.kind == "full"), key=lambda o: o.retention, default=None)
    if full is None:
        raise RetentionError("objectives.backups: no full backup objective (incrementals need a full)")
    for objective in objectives.backups:
        if objective.retention < objective.every:
            raise RetentionError(
                f"objectives.backups: {objective.kind} retention {_text(objective.retention)} is shorter "
                f"than its interval {_text(objective.every)}: no backup would survive until the next"
            )
        if objective.kind == "incremental" and objective.retention > full.retention:
            raise RetentionError(
                f"objectives.backups: incremental retention {_text(objective.retention)} exceeds the full "
                f"retention {_text(full.retention)}; pgBackRest expires incrementals with their full"
            )
    days = max(1, math.ceil(full.retention / timedelta(days=1)))
    return {
        "repo1-retention-full-type": "time",
        "repo1-retention-full": str(days),
        "repo1-retention-archive-type": "full",
    }


def repository_options(repo: Repository) -> dict[str, str]:
    """The S3 repository options. A loopback endpoint (moto behind the rig's TLS front) gets path-style
    URIs and no certificate check; anything else is verified."""
    options = {
        "stanza": repo.stanza,
        "repo1-type": "s3",
        "repo1-path": "/" + repo.path.strip("/"),
        "repo1-s3-bucket": repo.bucket,
        "repo1-s3-region": repo.region,
        "repo1-s3-endpoint": f"s3.{repo.region}.amazonaws.com",
        # Compressed files and gzip's speed: a good trade for hourly incrementals of an OLTP database.
        "compress-type": "gz",
        # An immediate checkpoint at the start: otherwise a backup waits for the spread checkpoint
        # (up to checkpoint_timeout x checkpoint_completion_target, 4.5 min by default).
        "start-fast": "y",
        "log-level-console": "info",
        "log-level-file": "off",  # the CronJob's log is its output; a pod has no /var/log to keep
    }
    if repo.endpoint:
        parts = urlsplit(repo.endpoint if "//" in repo.endpoint else f"https://{repo.endpoint}")
        if parts.scheme != "https":
            raise ValueError(f"S3 endpoint {repo.endpoint}: pgBackRest speaks S3 over https only")
        options["repo1-s3-endpoint"] = parts.hostname or ""
        if parts.port:
            options["repo1-storage-port"] = str(parts.port)
        options["repo1-s3-uri-style"] = "path"
        if parts.hostname in LOOPBACK_HOSTS:
            options["repo1-storage-verify-tls"] = "n"
    return options


def as_env(options: Mapping[str, str]) -> dict[str, str]:
    """pgBackRest options as environment variables: ``repo1-s3-bucket`` is ``PGBACKREST_REPO1_S3_BUCKET``."""
    return {"PGBACKREST_" + name.upper().replace("-", "_"): value for name, value in options.items()}


def repository_env(repo: Repository, objectives: Objectives) -> dict[str, str]:
    """Everything pgBackRest needs to reach the repository and apply the plan's retention."""
    return as_env({**repository_options(repo), **retention_options(objectives)})


def archive_command(stanza: str, pg_path: str = "") -> str:
    """PostgreSQL's ``archive_command``: every WAL segment to the repository as it fills."""
    pg = f" --pg1-path={pg_path}" if pg_path else ""
    return f"pgbackrest --stanza={stanza}{pg} archive-push %p"


@dataclass(frozen=True)
class BackupSet:
    """One backup in ``backup.info``: a full, or an incremental with the sets it needs."""

    label: str
    type: str  # full, diff, incr
    started_at: datetime
    stopped_at: datetime
    prior: str | None
    references: tuple[str, ...]  # every set whose files this one needs (the chain back to its full)
    archive_stop: str = ""  # the last WAL segment the backup needs to be consistent


def parse_backup_info(text: str) -> tuple[BackupSet, ...]:
    """The ``[backup:current]`` section of pgBackRest's ``backup.info``, oldest first."""
    sets: list[BackupSet] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "backup:current" or "=" not in line:
            continue
        label, _, value = line.partition("=")
        data = json.loads(value)
        sets.append(
            BackupSet(
                label=label,
                type=str(data["backup-type"]),
                started_at=datetime.fromtimestamp(int(data["backup-timestamp-start"]), UTC),
                stopped_at=datetime.fromtimestamp(int(data["backup-timestamp-stop"]), UTC),
                prior=data.get("backup-prior"),
                references=tuple(data.get("backup-reference") or ()),
                archive_stop=str(data.get("backup-archive-stop") or ""),
            )
        )
    return tuple(sorted(sets, key=lambda s: (s.stopped_at, s.label)))


def newest(sets: Iterable[BackupSet], backup_type: str | None = None) -> BackupSet | None:
    return max(
        (s for s in sets if backup_type is None or s.type == backup_type),
        key=lambda s: (s.stopped_at, s.label),
        default=None,
    )


def chain_findings(sets: tuple[BackupSet, ...], present: Iterable[str]) -> list[str]:
    """What breaks the restore chain of the newest backup: a set it needs is listed in backup.info
    but its files (``<label>/backup.manifest``) are gone from the repository, or it needs a set that
    backup.info no longer lists. ``present``: the labels whose manifest is in the repository."""
    latest = newest(sets)
    if latest is None:
        return ["no backup in the repository (backup.info lists none)"]
    if newest(sets, "full") is None:
        return ["no full backup in the repository: incrementals alone cannot be restored"]
    listed = {s.label for s in sets}
    have = set(present)
    findings = []
    for label in (*latest.references, latest.label):
        if label not in listed:
            findings.append(
                f"backup chain broken: {latest.label} needs {label}, which backup.info no longer lists"
            )
        elif label not in have:
            kind = "full" if label.endswith("F") and "_" not in label else "incremental"
            findings.append(
                f"backup chain broken: {kind} backup {label} is gone from the repository "
                f"(no {label}/backup.manifest), and the newest backup {latest.label} needs it"
            )
    return findings


def allowed_age(objective: BackupObjective) -> timedelta:
    return objective.every * (1 + SCHEDULE_GRACE)


def age_findings(sets: tuple[BackupSet, ...], objectives: Objectives, now: datetime) -> list[str]:
    """Backups older than the plan allows: the newest full against the full objective's interval, the
    newest backup of any type against the incremental one (an incremental or a newer full both count)."""
    findings = []
    for kind, backup_type in (("full", "full"), ("incremental", None)):
        objective = objective_of(objectives, kind)
        if objective is None:
            continue
        found = newest(sets, backup_type)
        if found is None:
            findings.append(
                f"no {kind} backup in the repository; the plan takes one every {_text(objective.every)}"
            )
            continue
        age = now - found.stopped_at
        if age > allowed_age(objective):
            findings.append(
                f"newest {kind} backup {found.label} finished {_text(age)} ago; the plan takes one every "
                f"{_text(objective.every)} (allowed: {_text(allowed_age(objective))})"
            )
    return findings


def _text(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds % 86400 == 0 and seconds:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
