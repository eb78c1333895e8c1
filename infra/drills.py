"""DrillSchedule: CronJobs that run the disaster-recovery drills (``rollout drill ...``) on a schedule.

One CronJob per drill: the backup-restore drill and the region-failover drill, both with
``--execute``, at the plan's ``disaster_recovery.drill_every`` unless the stack sets a schedule.
They run from the primary region only: in a secondary region the CronJobs exist but are suspended,
so a failover (a ``regionRole`` change) moves the drills with it as an in-place update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.schedule import cron_every
from infra.settings import DrillOptions, Drills, RegionRole, drill_flags
from rollout_policies.plan.model import DisasterRecovery

COMPONENT = "drills"
DRILLS = ("backup-restore", "region-failover")


@dataclass(frozen=True)
class DrillArgs:
    service: str
    namespace: str
    stack: str
    plan_path: str
    role: RegionRole
    disaster_recovery: DisasterRecovery
    drills: Drills = field(default_factory=Drills)
    # The stack's drill values (settings.drill_options): a pod has no stack files, so they go in as flags.
    options: DrillOptions = field(
        default_factory=lambda: DrillOptions(
            "markethub", "markethub-backups", "pgbackrest/markethub-mobile", "", "", "", {}
        )
    )
    # pgBackRest's repository settings, as the backup CronJobs have them (backups.pgbackrest_env):
    # the restore drill reads the same repository.
    repository_env: tuple[Manifest, ...] = ()
    # The Secret whose key ``url`` is the database backed up: the restore drill marks its target there.
    database_secret: str = "markethub-db"


KUBECONFIG_MOUNT = "/etc/markethub-rollout/kubeconfig"
REPORT_DIR = "/tmp/drills"


def plan_flags(plan_path: str) -> list[str]:
    """``--plan`` for a plan of the team's own; none for the packaged plan, which the command finds
    in the installed package (a pod has no checkout, so a path into the repository would not exist)."""
    from infra.program import resolve_plan_path
    from rollout_policies.plan.loader import DEFAULT_PLAN

    if resolve_plan_path(plan_path).resolve() == DEFAULT_PLAN:
        return []
    return ["--plan", plan_path]


def drill_command(args: DrillArgs, drill: str) -> list[str]:
    """The container's command line: the flags ``rollout drill --stack`` would read from the file."""
    return [
        "rollout", "drill", drill, "--execute", *plan_flags(args.plan_path),
        *drill_flags(args.options, drill), "--report-dir", REPORT_DIR,
    ]  # fmt: skip


def drill_env(args: DrillArgs, drill: str) -> list[Manifest]:
    """Secrets by reference: the database and its backup repository, the regions' kubeconfig, the
    reports repository."""
    env: list[Manifest] = []
    if drill == "backup-restore":
        env += list(args.repository_env)
        env.append(_secret_env("DRILL_SOURCE_DSN", args.database_secret, "url"))
    if args.drills.kubeconfig_secret:
        env.append({"name": "KUBECONFIG", "value": f"{KUBECONFIG_MOUNT}/config"})
    if args.drills.reports_repository:
        env.append({"name": "ROLLOUT_REPORTS_GIT_URL", "value": args.drills.reports_repository})
        env.append(_secret_env("ROLLOUT_GIT_TOKEN", args.drills.git_secret, "token"))
    return env


def _secret_env(name: str, secret: str, key: str) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def drill_schedule(args: DrillArgs, index: int) -> str:
    if args.drills.schedule:
        return args.drills.schedule
    # The two drills a few hours apart, so a failover drill never overlaps a restore.
    return cron_every(args.disaster_recovery.drill_every, minute=0, hour=3 + 3 * index)


def drill_cronjob_manifest(args: DrillArgs, drill: str, index: int) -> Manifest:
    labels = {**naming.base_labels(args.service, COMPONENT), "rollout.markethub.io/drill": drill}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{args.service}-drill-{drill}", "namespace": args.namespace, "labels": labels},
        "spec": {
            "schedule": drill_schedule(args, index),
            "suspend": args.role is not RegionRole.PRIMARY or not args.drills.enabled,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 5,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,  # a failed drill is a finding, not something to retry quietly
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            **_volumes(args),
                            "containers": [
                                {
                                    "name": "drill",
                                    "image": args.drills.image,
                                    "command": drill_command(args, drill),
                                    "env": drill_env(args, drill),
                                    # The plan's notification variables (Slack webhook, PagerDuty
                                    # key) by their names, when the Secret exists: drills notify.
                                    "envFrom": [
                                        {"secretRef": {"name": args.drills.notify_secret, "optional": True}}
                                    ],
                                    **_kubeconfig_mount(args),
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "128Mi"},
                                        "limits": {"memory": "512Mi"},
                                    },
                                }
                            ],
                        },
                    },
                }
            },
        },
    }


def _kubeconfig_mount(args: DrillArgs) -> Manifest:
    if not args.drills.kubeconfig_secret:
        return {}
    return {"volumeMounts": [{"name": "kubeconfig", "mountPath": KUBECONFIG_MOUNT, "readOnly": True}]}


def _volumes(args: DrillArgs) -> Manifest:
    if not args.drills.kubeconfig_secret:
        return {}
    return {"volumes": [{"name": "kubeconfig", "secret": {"secretName": args.drills.kubeconfig_secret}}]}


class DrillSchedule(pulumi.ComponentResource):
    """The scheduled DR drills of one region."""

    def __init__(self, name: str, args: DrillArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:DrillSchedule", name, None, opts)
        child = kube.child_options(self, opts)
        self.cronjobs = [
            kube.apply(f"{name}-{drill}", drill_cronjob_manifest(args, drill, index), child)
            for index, drill in enumerate(DRILLS)
        ]
        self.register_outputs(
            {"drills": list(DRILLS), "active": args.role is RegionRole.PRIMARY and args.drills.enabled}
        )
