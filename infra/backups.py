"""BackupSchedule: Velero Schedules for the namespace and an hourly pg_dump of the database to S3.

Each of the plan's backup objectives (``objectives.backups``) becomes one Velero Schedule firing at
its interval and keeping each backup for its retention. Incremental backups copy volume data with
Velero's file-system backup (kopia deduplicates, so each run stores only what changed); the full
backup takes volume snapshots of everything. The database dump CronJob (``rollout drill backup``)
follows the most frequent objective (hourly in the seed), so the database's recovery point matches
the plan's RPO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.schedule import cron_every, go_duration
from infra.settings import Backup, DrillOptions, drill_flags
from rollout_policies.plan.model import BackupObjective, Objectives, format_duration

COMPONENT = "backups"


@dataclass(frozen=True)
class BackupArgs:
    service: str
    namespace: str
    objectives: Objectives
    backup: Backup = field(default_factory=Backup)
    region: str = ""
    # The rollout image (it has pg_dump) and the drill values of the stack (settings.drill_options).
    image: str = "ghcr.io/markethub/markethub-rollout:latest"
    options: DrillOptions = field(
        default_factory=lambda: DrillOptions("markethub", "markethub-backups", "pg-dumps", "", "", "", {})
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


def dump_objective(objectives: Objectives) -> BackupObjective:
    """The most frequent backup objective: the database dump must be at least that fresh."""
    return min(objectives.backups, key=lambda objective: objective.every)


def pg_dump_command(args: BackupArgs) -> list[str]:
    """``rollout drill backup``: pg_dump plus the manifest (row counts, checksums of the plan's
    verify_tables) the restore drill checks a restore against, to the bucket and prefix the drills
    read (``drill_options``), so what the CronJob writes is what the restore drill finds."""
    return ["rollout", "drill", "backup", *drill_flags(args.options, "backup")]


def pg_dump_cronjob_manifest(args: BackupArgs) -> Manifest:
    objective = dump_objective(args.objectives)
    env: list[Manifest] = [
        {
            "name": "DRILL_BACKUP_DSN",
            "valueFrom": {"secretKeyRef": {"name": args.backup.database_secret, "key": "url"}},
        },
    ]
    if args.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": args.region})
    labels = naming.base_labels(args.service, COMPONENT)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{args.service}-pg-dump", "namespace": args.namespace, "labels": labels},
        "spec": {
            "schedule": cron_every(objective.every, minute=15),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    # A dump slower than its interval would overlap the next one: fail it instead.
                    "activeDeadlineSeconds": int(objective.every.total_seconds()),
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [
                                {
                                    "name": "pg-dump",
                                    "image": args.image,
                                    "command": pg_dump_command(args),
                                    "env": env,
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "128Mi"},
                                        "limits": {"memory": "1Gi"},
                                    },
                                }
                            ],
                        },
                    },
                }
            },
        },
    }


class BackupSchedule(pulumi.ComponentResource):
    """Velero Schedules per backup objective, and the database dump CronJob."""

    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:BackupSchedule", name, None, opts)
        child = kube.child_options(self, opts)
        self.schedules = [
            kube.apply(
                schedule_name(name, objective), velero_schedule_manifest(args, objective, index), child
            )
            for index, objective in enumerate(args.objectives.backups)
        ]
        self.dump = kube.apply(f"{name}-pg-dump", pg_dump_cronjob_manifest(args), child)
        self.register_outputs(
            {
                "schedules": [schedule_name(args.service, o) for o in args.objectives.backups],
                "dumpSchedule": cron_every(dump_objective(args.objectives).every, minute=15),
            }
        )
