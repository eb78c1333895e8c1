"""`rollout drill ...`: run the disaster-recovery drills (region failover, backup restore), take a backup."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan


def _load_plan(path: str | None) -> Plan:
    return load_plan(Path(path) if path else DEFAULT_PLAN)


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UserError(f"{flag}: expected REGION=VALUE, got {value!r}")
        result[key] = rest
    return result


def _env_file(path: str | None) -> dict[str, Any]:
    """The local environment's env.json (kubeconfig paths per region, moto endpoint), if given."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"--env: cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise UserError(f"--env: {path} is not a JSON object")
    return data


def env_kubeconfigs(data: dict[str, Any]) -> dict[str, str]:
    """Region -> kubeconfig path from env.json: ``regions`` or ``clusters`` as a mapping or a list."""
    found: dict[str, str] = {}
    for key in ("regions", "clusters"):
        section = data.get(key)
        items: list[tuple[str, Any]] = []
        if isinstance(section, dict):
            items = list(section.items())
        elif isinstance(section, list):
            items = [
                (str(item.get("region") or item.get("name")), item)
                for item in section
                if isinstance(item, dict)
            ]
        for region, value in items:
            if isinstance(value, str):
                found[region] = value
            elif isinstance(value, dict) and value.get("kubeconfig"):
                found[region] = str(value["kubeconfig"])
    return found


def env_aws_endpoint(data: dict[str, Any]) -> str | None:
    for key in ("moto_url", "aws_endpoint_url", "endpoint_url"):
        if isinstance(data.get(key), str):
            return str(data[key])
    moto = data.get("moto")
    if isinstance(moto, dict) and isinstance(moto.get("endpoint_url"), str):
        return str(moto["endpoint_url"])
    return None


def aws_client(service: str, endpoint_url: str | None, region: str) -> Any:
    import boto3

    kwargs: dict[str, Any] = {"region_name": region}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
            # A local stand-in (moto) accepts any credentials; real AWS never sees these.
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client(service, **kwargs)


def _finish(report: Any, report_dir: str, commit: bool) -> None:
    from runbooks.report import commit_report, write_report

    for step in report.steps:
        text = step.detail or step.changes
        click.echo(f"  {step.status.value:<12} {step.name:<34} {text}")
    for objective in report.objectives:
        measured = (
            "not measured" if objective.measured_seconds is None else f"{objective.measured_seconds:.2f}s"
        )
        met = {True: "met", False: "MISSED", None: "unknown"}[objective.met]
        click.echo(
            f"  objective    {objective.name:<34} {measured} (limit {objective.limit_seconds:.0f}s): {met}"
        )
    for note in report.notes:
        click.echo(f"  note: {note}")
    paths = write_report(report, Path(report_dir))
    click.echo(f"{report.drill}: {report.verdict.value}; report {paths[0]} and {paths[1]}")
    if commit:
        commit_id = commit_report(paths, f"drill {report.drill}: {report.verdict.value}")
        click.echo(f"committed {commit_id[:12]}")
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _fault(step: str | None) -> Callable[[str], None] | None:
    if not step:
        return None

    def fault(point: str) -> None:
        if point == step:
            raise RuntimeError(f"fault injected at {point} (--inject-fault)")

    return fault


_common = [
    click.option(
        "--execute", is_flag=True, help="Really do it (the default is a dry run that changes nothing)."
    ),
    click.option(
        "--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file (default: the packaged plan)."
    ),
    click.option(
        "--report-dir", default="drills", show_default=True, help="Where the JSON and Markdown reports go."
    ),
    click.option(
        "--commit", is_flag=True, help="Commit the report in the git repository that holds --report-dir."
    ),
    click.option(
        "--env", "env_path", type=click.Path(dir_okay=False), help="The local environment's env.json."
    ),
    click.option(
        "--aws-endpoint-url", envvar="AWS_ENDPOINT_URL", help="AWS endpoint (a moto server locally)."
    ),
    click.option(
        "--bucket", default="markethub-backups", show_default=True, help="S3 bucket of database dumps."
    ),
    click.option(
        "--prefix", default="postgres", show_default=True, help="Key prefix of the dumps in --bucket."
    ),
]


def _with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        func = option(func)
    return func


@click.group()
def drill() -> None:
    """Disaster-recovery drills: region failover and backup restore, each with a report."""


@drill.command("region-failover")
@_with_common
@click.option("--stay", is_flag=True, help="Leave traffic on the secondary region (default: fail back).")
@click.option("--zone", default="markethub.test.", show_default=True, help="Route 53 hosted zone.")
@click.option("--record", default="api.markethub.test.", show_default=True, help="The failover record name.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="REGION=URL", help="Probe URL of a region.")
@click.option(
    "--kubeconfig", "kubeconfigs", multiple=True, metavar="REGION=PATH", help="Kubeconfig of a region."
)
@click.option("--namespace", default="markethub", show_default=True, help="Namespace of the workloads.")
@click.option("--stacks-dir", default=".", show_default=True, help="Folder of the Pulumi.<stack>.yaml files.")
@click.option("--ensure-records", is_flag=True, help="Create the zone, health checks and records if missing.")
@click.option(
    "--inject-fault", metavar="STEP", hidden=True, help="Fail at the end of STEP (drill the safety)."
)
def region_failover(
    execute: bool,
    plan_path: str | None,
    report_dir: str,
    commit: bool,
    env_path: str | None,
    aws_endpoint_url: str | None,
    bucket: str,
    prefix: str,
    stay: bool,
    zone: str,
    record: str,
    endpoints: tuple[str, ...],
    kubeconfigs: tuple[str, ...],
    namespace: str,
    stacks_dir: str,
    ensure_records: bool,
    inject_fault: str | None,
) -> None:
    """Fail DNS over to the secondary region, verify it serves, measure recovery, fail back."""
    import httpx

    from runbooks.region_failover import (
        STEP_NAMES,
        FailoverDrill,
        FailoverTarget,
        KubernetesWorkloads,
        RegionTarget,
        ensure_failover_records,
    )

    if inject_fault and inject_fault not in STEP_NAMES:
        raise UserError(f"--inject-fault: unknown step {inject_fault!r}")
    plan = _load_plan(plan_path)
    env = _env_file(env_path)
    configs = {**env_kubeconfigs(env), **_pairs(kubeconfigs, "--kubeconfig")}
    urls = _pairs(endpoints, "--endpoint")
    dr = plan.objectives.disaster_recovery
    for region in dr.regions:
        if region not in urls:
            raise UserError(f"--endpoint: no probe URL for region {region} (write {region}=URL)")
    target = FailoverTarget(
        zone=zone,
        record=record,
        regions={
            region: RegionTarget(
                host=f"{region}.{record.rstrip('.')}",
                probe_url=urls[region],
                kubeconfig=Path(configs[region]) if region in configs else None,
            )
            for region in dr.regions
        },
        namespace=namespace,
        bucket=bucket,
        prefix=prefix,
        stacks_dir=Path(stacks_dir),
    )
    endpoint_url = aws_endpoint_url or env_aws_endpoint(env)
    route53 = aws_client("route53", endpoint_url, dr.primary)
    s3 = aws_client("s3", endpoint_url, dr.primary)
    if ensure_records:
        ensure_failover_records(route53, target, dr.primary)
    workloads = KubernetesWorkloads({r: Path(p) for r, p in configs.items()}, namespace)
    with httpx.Client(timeout=5.0) as http:
        report = FailoverDrill(
            plan=plan,
            target=target,
            route53=route53,
            s3=s3,
            workloads=workloads,
            http=http,
            fault=_fault(inject_fault),
        ).run(execute=execute, stay=stay)
    _finish(report, report_dir, commit)


@drill.command("backup-restore")
@_with_common
@click.option("--restore-dsn", envvar="DRILL_RESTORE_DSN", help="PostgreSQL server for the scratch database.")
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Cluster with Velero (default: the primary's)."
)
@click.option(
    "--velero-namespace", default="velero", show_default=True, help="Namespace of Velero's objects."
)
@click.option("--namespace", default="markethub", show_default=True, help="Workload namespace to restore.")
@click.option(
    "--velero-wait",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the Velero Restore's final phase.",
)
def backup_restore(
    execute: bool,
    plan_path: str | None,
    report_dir: str,
    commit: bool,
    env_path: str | None,
    aws_endpoint_url: str | None,
    bucket: str,
    prefix: str,
    restore_dsn: str | None,
    kubeconfig: str | None,
    velero_namespace: str,
    namespace: str,
    velero_wait: float,
) -> None:
    """Restore the newest dump into a scratch database and verify it; restore the newest Velero Backup."""
    from runbooks.backup_restore import KubernetesVelero, RestoreDrill, RestoreTarget, VeleroBounds

    plan = _load_plan(plan_path)
    env = _env_file(env_path)
    dr = plan.objectives.disaster_recovery
    kubeconfig = kubeconfig or env_kubeconfigs(env).get(dr.primary)
    velero = KubernetesVelero(Path(kubeconfig), velero_namespace) if kubeconfig else None
    s3 = aws_client("s3", aws_endpoint_url or env_aws_endpoint(env), dr.primary)
    report = RestoreDrill(
        plan=plan,
        target=RestoreTarget(
            bucket=bucket, prefix=prefix, restore_dsn=restore_dsn or "", namespace=namespace
        ),
        s3=s3,
        velero=velero,
        velero_bounds=VeleroBounds(attempts=int(velero_wait) + 1, interval=1.0, deadline=velero_wait),
    ).run(execute=execute)
    _finish(report, report_dir, commit)


@drill.command("backup")
@click.option("--dsn", required=True, envvar="DRILL_BACKUP_DSN", help="The database to back up.")
@click.option(
    "--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file (default: the packaged plan)."
)
@click.option("--env", "env_path", type=click.Path(dir_okay=False), help="The local environment's env.json.")
@click.option("--aws-endpoint-url", envvar="AWS_ENDPOINT_URL", help="AWS endpoint (a moto server locally).")
@click.option("--bucket", default="markethub-backups", show_default=True, help="S3 bucket of database dumps.")
@click.option("--prefix", default="postgres", show_default=True, help="Key prefix of the dumps in --bucket.")
@click.option("--create-bucket", is_flag=True, help="Create --bucket if it does not exist.")
def backup(
    dsn: str,
    plan_path: str | None,
    env_path: str | None,
    aws_endpoint_url: str | None,
    bucket: str,
    prefix: str,
    create_bucket: bool,
) -> None:
    """Take a database backup now: pg_dump plus a manifest of the plan's verify_tables, uploaded to S3."""
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError

    from runbooks.backup import make_backup
    from runbooks.report import utc_now

    plan = _load_plan(plan_path)
    dr = plan.objectives.disaster_recovery
    s3 = aws_client("s3", aws_endpoint_url or env_aws_endpoint(_env_file(env_path)), dr.primary)
    try:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            if not create_bucket:
                raise UserError(f"--bucket: no S3 bucket {bucket} (pass --create-bucket to make it)")
            location = {} if dr.primary == "us-east-1" else {"LocationConstraint": dr.primary}
            s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": location} if location else {}))
        made = make_backup(
            dsn=dsn, s3=s3, bucket=bucket, prefix=prefix, tables=dr.verify_tables, now=utc_now()
        )
    except (BotoCoreError, ClientError) as err:
        raise UserError(f"s3://{bucket}: {err}") from err
    except psycopg.OperationalError as err:
        raise UserError(f"--dsn: {str(err).strip().splitlines()[0]}") from err
    except RuntimeError as err:  # pg_dump failed
        raise UserError(f"--dsn: {err}") from err
    click.echo(f"backup s3://{made.bucket}/{made.key} (manifest beside it)")
