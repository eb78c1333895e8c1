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
from infra.settings import Drills, RegionRole
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
                            "containers": [
                                {
                                    "name": "drill",
                                    "image": args.drills.image,
                                    "command": [
                                        "rollout",
                                        "drill",
                                        drill,
                                        "--execute",
                                        "--plan",
                                        args.plan_path,
                                        "--stack",
                                        args.stack,
                                    ],
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
