"""Executable disaster-recovery procedures (region failover, backup restore), each with a page and a report.

The public surface: ``FailoverDrill`` and ``RestoreDrill`` run a drill and return a ``DrillReport``;
``take_backup`` takes a pgBackRest backup (full or incremental); ``write_report`` /
``commit_report`` store reports.
The human pages beside the code (``runbooks/*.md``) name every step the code runs.
"""

from runbooks.backup import latest_backup, take_backup
from runbooks.backup_restore import KubernetesVelero, RestoreDrill, RestoreTarget, Velero
from runbooks.region_failover import (
    FailoverDns,
    FailoverDrill,
    FailoverTarget,
    KubernetesWorkloads,
    RegionTarget,
    Workloads,
    ensure_failover_records,
)
from runbooks.report import DrillReport, Verdict, commit_report, write_report

__all__ = [
    "DrillReport",
    "FailoverDns",
    "FailoverDrill",
    "FailoverTarget",
    "KubernetesVelero",
    "KubernetesWorkloads",
    "RegionTarget",
    "RestoreDrill",
    "RestoreTarget",
    "Velero",
    "Verdict",
    "Workloads",
    "commit_report",
    "ensure_failover_records",
    "latest_backup",
    "take_backup",
    "write_report",
]
