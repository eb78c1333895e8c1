"""BackupSchedule: Velero Schedules for the namespace, and pgBackRest's database backups as CronJobs.

Each of the plan's backup objectives (``objectives.backups``) becomes one Velero Schedule firing at
its interval and keeping each backup for its retention. Incremental backups copy volume data with
Velero's file-system backup (kopia deduplicates, so each run stores only what changed); the full
backup takes volume snapshots of everything.

The database gets the same objectives from pgBackRest: one CronJob per objective runs
``rollout drill backup --type full`` (daily in the seed) or ``--type incremental`` (hourly), which
runs ``pgbackrest stanza-create`` and ``pgbackrest backup --type=full|incr`` into the S3
repository, with the retention the objectives imply (``runbooks.pgbackrest.retention_options``); the
database's ``archive_command`` ships WAL continuously in between, which is what a point-in-time
restore replays. All of pgBackRest's settings are ``PGBACKREST_*`` variables on the containers, so
the CronJob is its whole configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.schedule import cron_every, go_duration
from infra.settings import Backup, DrillOptions, drill_flags
from rollout_policies.plan.model import BackupObjective, Objectives, format_duration
from runbooks.pgbackrest import Repository, repository_env

COMPONENT = "backups"
TLS_MOUNT = "/etc/pgbackrest/tls"


@dataclass(frozen=True)
class BackupArgs:
    service: str
    namespace: str
    objectives: Objectives
    backup: Backup = field(default_factory=Backup)
    region: str = ""
    # The rollout image (it has pgbackrest) and the drill values of the stack (settings.drill_options).
    image: str = "ghcr.io/markethub/markethub-rollout:latest"
    options: DrillOptions = field(
        default_factory=lambda: DrillOptions(
            "markethub", "markethub-backups", "pgbackrest/markethub-mobile", "", "", "", {}
        )
    )


def schedule_name(service: str, objective: BackupObjective) -> str:
    """``markethub-mobile-incremental-1h``: unique even if a plan has two objectives of one kind."""
    return f"{service}-{objective.kind}-{format_duration(objective.every)}"


def velero_schedule_manifest(args: BackupArgs, objective: BackupObjective, index: int) -> Manifest:
    incremental = objective.kind == "incremental"
    template: Manifest = {
        "includedNamespaces": [args.namespace],
        "ttl": go_duration(objective.retention),
        "storageLocation": args.backup.storage_location,
        # The labels each Backup object gets: the drills find the newest backup of a kind by them.
        "metadata": {
            "labels": {naming.NAME: args.service, "rollout.markethub.io/backup-kind": objective.kind}
        },
    }
    if incremental:
        template["defaultVolumesToFsBackup"] = True
        template["snapshotVolumes"] = False
    else:
        template["snapshotVolumes"] = True
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Schedule",
        "metadata": {
            "name": schedule_name(args.service, objective),
            "namespace": args.backup.velero_namespace,
            "labels": naming.base_labels(args.service, COMPONENT),
        },
        "spec": {
            # Spread the objectives over the hour so they do not start together (full at 02:30).
            "schedule": cron_every(objective.every, minute=(index * 30) % 60, hour=2),
            "useOwnerReferencesInBackup": False,
            "template": template,
        },
    }


def repository(args: BackupArgs) -> Repository:
    """pgBackRest's repository: the bucket and prefix the drills read (``drill_options``)."""
    return Repository(
        bucket=args.options.bucket,
        path="/" + args.options.prefix.strip("/"),
        region=args.region or args.options.region,
        stanza=args.options.stanza,
        endpoint=args.options.s3_endpoint,
    )


def pgbackrest_env(args: BackupArgs, *, database: bool = True) -> list[Manifest]:
    """pgBackRest's whole configuration as container variables: the repository and retention, S3
    credentials (a Secret, else the pod's web identity), and with ``database`` where the database's
    files are (its host's pgBackRest TLS server, or local to the job)."""
    values = repository_env(repository(args), args.objectives)
    backup = args.backup
    if database:
        values["PGBACKREST_PG1_PATH"] = backup.database_path
        values["PGBACKREST_PG1_PORT"] = str(backup.database_port)
        if backup.database_host:
            values.update(
                PGBACKREST_PG1_HOST=backup.database_host,
                PGBACKREST_PG1_HOST_TYPE="tls",
                PGBACKREST_PG1_HOST_CA_FILE=f"{TLS_MOUNT}/ca.crt",
                PGBACKREST_PG1_HOST_CERT_FILE=f"{TLS_MOUNT}/tls.crt",
                PGBACKREST_PG1_HOST_KEY_FILE=f"{TLS_MOUNT}/tls.key",
            )
    if not backup.s3_credentials_secret:
        values["PGBACKREST_REPO1_S3_KEY_TYPE"] = "web-id"
    env: list[Manifest] = [{"name": name, "value": value} for name, value in sorted(values.items())]
    if backup.s3_credentials_secret:
        for name, key in (("PGBACKREST_REPO1_S3_KEY", "key"), ("PGBACKREST_REPO1_S3_KEY_SECRET", "secret")):
            env.append(
                {
                    "name": name,
                    "valueFrom": {"secretKeyRef": {"name": backup.s3_credentials_secret, "key": key}},
                }
            )
    return env


def pgbackrest_command(args: BackupArgs, objective: BackupObjective) -> list[str]:
    """``rollout drill backup --type <kind>``: ``pgbackrest stanza-create`` (a no-op once made), then
    ``pgbackrest backup --type=full|incr``, every pgBackRest setting from the container's variables;
    the flags name the same repository for the command's own messages."""
    return ["rollout", "drill", "backup", "--type", objective.kind, *drill_flags(args.options, "backup")]


def pgbackrest_cronjob_name(service: str, objective: BackupObjective) -> str:
    """``markethub-mobile-pgbackrest-incremental-1h``."""
    return f"{service}-pgbackrest-{objective.kind}-{format_duration(objective.every)}"


def pgbackrest_schedule(objective: BackupObjective) -> str:
    # Fulls at 01:00, incrementals at a quarter past: an incremental never starts on a full's lock.
    return cron_every(objective.every, minute=0 if objective.kind == "full" else 15, hour=1)


def pgbackrest_cronjob_manifest(args: BackupArgs, objective: BackupObjective) -> Manifest:
    labels = {
        **naming.base_labels(args.service, COMPONENT),
        "rollout.markethub.io/backup-kind": objective.kind,
    }
    env = pgbackrest_env(args)
    tls = bool(args.backup.database_host)
    container: Manifest = {
        "image": args.image,
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        **(
            {"volumeMounts": [{"name": "pgbackrest-tls", "mountPath": TLS_MOUNT, "readOnly": True}]}
            if tls
            else {}
        ),
    }
    pod: Manifest = {
        "restartPolicy": "OnFailure",
        "containers": [{"name": "backup", "command": pgbackrest_command(args, objective), **container}],
    }
    if tls:
        pod["volumes"] = [
            {"name": "pgbackrest-tls", "secret": {"secretName": args.backup.database_tls_secret}}
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": pgbackrest_cronjob_name(args.service, objective),
            "namespace": args.namespace,
            "labels": labels,
        },
        "spec": {
            "schedule": pgbackrest_schedule(objective),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    # A backup slower than its interval would overlap the next one: fail it instead.
                    "activeDeadlineSeconds": int(objective.every.total_seconds()),
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                }
            },
        },
    }


class BackupSchedule(pulumi.ComponentResource):
    """Velero Schedules per backup objective, and a pgBackRest CronJob per backup objective."""

    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:BackupSchedule", name, None, opts)
        child = kube.child_options(self, opts)
        self.schedules = [
            kube.apply(
                schedule_name(name, objective), velero_schedule_manifest(args, objective, index), child
            )
            for index, objective in enumerate(args.objectives.backups)
        ]
        self.database = [
            kube.apply(
                pgbackrest_cronjob_name(name, objective), pgbackrest_cronjob_manifest(args, objective), child
            )
            for objective in args.objectives.backups
        ]
        self.register_outputs(
            {
                "schedules": [schedule_name(args.service, o) for o in args.objectives.backups],
                "databaseBackups": {
                    pgbackrest_cronjob_name(args.service, o): pgbackrest_schedule(o)
                    for o in args.objectives.backups
                },
            }
        )
