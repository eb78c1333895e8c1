"""`rollout drill ...`: run the disaster-recovery drills (region failover, backup restore), take a backup."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from infra.settings import DrillOptions
from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.gitops.notify import notify_drill
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Notifications, Plan


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


def env_database(data: dict[str, Any]) -> dict[str, Any]:
    """``rollout env up --database``: the database and pgBackRest's settings for it (S3 through
    moto's TLS front, where the data is)."""
    database = data.get("database")
    return database if isinstance(database, dict) else {}


def env_repository(
    data: dict[str, Any], bucket: str | None, prefix: str | None
) -> tuple[str | None, str | None]:
    """Bucket and prefix: the flags, else the local database's pgBackRest repository."""
    settings = env_database(data).get("pgbackrest") or {}
    return (
        bucket or settings.get("PGBACKREST_REPO1_S3_BUCKET"),
        prefix or (settings.get("PGBACKREST_REPO1_PATH") or "").strip("/") or None,
    )


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
        if urlsplit(endpoint_url).hostname in ("127.0.0.1", "localhost", "::1"):
            # The rig's TLS front for moto has a throwaway certificate; loopback only.
            kwargs["verify"] = False
        if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
            # A local stand-in (moto) accepts any credentials; real AWS never sees these.
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client(service, **kwargs)


@dataclass(frozen=True)
class DrillContext:
    """The plan and, with ``--stack``, the drill values of that stack's config (``None`` without)."""

    plan: Plan
    options: DrillOptions | None
    clusters: dict[str, tuple[str | None, str | None]]  # region -> (kubeconfig, context)
    notifications: Notifications


def _stack_context(plan_path: str | None, stack: str | None, stacks_dir: str) -> DrillContext:
    """``--stack``: zone, record, probe URLs, bucket, prefix and S3 endpoint from Pulumi.<stack>.yaml
    (through the function the CronJobs' flags come from), each region's cluster from the stack of the
    same environment for that region (``kubernetes:kubeconfig`` / ``kubernetes:context``)."""
    from infra.settings import drill_options, settings_from_stack_file

    if not stack:
        plan = _load_plan(plan_path)
        return DrillContext(plan, None, {}, plan.notifications)
    folder = Path(stacks_dir)
    path = folder / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise UserError(f"--stack {stack}: no {path} (use --stacks-dir to name the folder)")
    settings = settings_from_stack_file(path)
    plan_file = Path(plan_path) if plan_path else Path(settings.plan)
    if not plan_path and not plan_file.is_absolute() and not plan_file.exists():
        plan_file = folder / settings.plan
    plan = load_plan(plan_file) if plan_path or plan_file.exists() else _load_plan(None)
    options = drill_options(settings, settings.service_name or plan.service)
    clusters: dict[str, tuple[str | None, str | None]] = {}
    for other in sorted(folder.glob("Pulumi.*.yaml")):
        try:
            theirs = settings_from_stack_file(other)
        except UserError:
            continue
        if (
            theirs.environment is settings.environment
            and theirs.region in plan.objectives.disaster_recovery.regions
        ):
            raw = _raw_config(other)
            kubeconfig = raw.get("kubernetes:kubeconfig")
            context = raw.get("kubernetes:context")
            clusters.setdefault(theirs.region, (str(kubeconfig) if kubeconfig else None, context))
    return DrillContext(plan, options, clusters, plan.notifications)


def _raw_config(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    config = data.get("config") or {}
    return config if isinstance(config, dict) else {}


def _finish(
    report: Any,
    report_dir: str,
    commit: bool,
    push_to: str | None = None,
    context: DrillContext | None = None,
    as_json: bool = False,
) -> None:
    from runbooks.report import commit_report, push_report, write_report

    def say(line: str) -> None:
        if not as_json:
            click.echo(line)

    if not as_json:
        _print_report(report)
    from rollout_policies.pages import drills

    json_path, md_path = write_report(report, Path(report_dir))
    # The page with plots, beside the data and the Markdown: committed and pushed with them.
    paths = (json_path, md_path, drills.write(report, json_path.with_suffix(".html")))
    say(f"{report.drill}: {report.verdict.value}; report {paths[0]}, {paths[1]} and {paths[2]}")
    message = f"drill {report.drill}: {report.verdict.value}"
    committed = pushed = None
    if commit:
        committed = commit_report(paths, message)
        say(f"committed {committed[:12]}")
    if push_to:
        token = os.environ.get(envvars.GIT_TOKEN, "")
        pushed = push_report(paths, report.drill, push_to, message, token=token)
        say(f"pushed {pushed[:12]} (reports/drills/{report.drill}/{paths[0].name})")
    if as_json:
        data = json.loads(report.to_json())
        data.update(report_files=[str(path) for path in paths], committed=committed, pushed=pushed)
        click.echo(json.dumps(data, indent=2))
    if context is not None and report.executed:
        for warning in notify_drill(report, context.notifications, paths[1].name):
            click.echo(f"warning: {warning}", err=True)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _print_report(report: Any) -> None:
    from rollout_policies.cli.tables import Table, echo

    steps = Table(
        ("status", "step", "detail"),
        [(step.status.value, step.name, step.detail or step.changes) for step in report.steps],
    )
    objectives = Table(
        ("objective", "measured", "limit", "met"),
        [
            (
                objective.name,
                "not measured" if o_s is None else f"{o_s:.2f}s",
                f"{objective.limit_seconds:.0f}s",
                {True: "met", False: "MISSED", None: "unknown"}[objective.met],
            )
            for objective in report.objectives
            for o_s in [objective.measured_seconds]
        ],
    )
    echo([steps, *([objectives] if report.objectives else []), *(f"note: {note}" for note in report.notes)])


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
        "--bucket",
        default=None,
        help="S3 bucket of database dumps (default: the stack's, else markethub-backups).",
    ),
    click.option(
        "--prefix",
        default=None,
        help="Key prefix of the dumps in --bucket (default: the stack's, else postgres).",
    ),
    click.option(
        "--stack",
        default=None,
        help="Take zone, record, probe URLs, bucket, prefix, S3 endpoint and clusters from "
        "Pulumi.<stack>.yaml.",
    ),
    click.option(
        "--stacks-dir", default=".", show_default=True, help="Folder of the Pulumi.<stack>.yaml files."
    ),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the report as JSON (as in its .json file), with its files.",
    ),
    click.option(
        "--push-to",
        envvar="ROLLOUT_REPORTS_GIT_URL",
        default=None,
        help="Commit the report under reports/drills/ of this git repository's main branch and push it "
        "(token for https in $ROLLOUT_GIT_TOKEN).",
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
@click.option(
    "--zone", default=None, help="Route 53 hosted zone (default: the stack's, else markethub.test.)."
)
@click.option(
    "--record",
    default=None,
    help="The failover record name (default: the stack's, else api.markethub.test.).",
)
@click.option("--endpoint", "endpoints", multiple=True, metavar="REGION=URL", help="Probe URL of a region.")
@click.option(
    "--kubeconfig", "kubeconfigs", multiple=True, metavar="REGION=PATH", help="Kubeconfig of a region."
)
@click.option(
    "--kube-context",
    "kube_contexts",
    multiple=True,
    metavar="REGION=CONTEXT",
    help="A region's context in the default kubeconfig ($KUBECONFIG).",
)
@click.option(
    "--namespace", default=None, help="Namespace of the workloads (default: the stack's, else markethub)."
)
@click.option(
    "--service",
    default=None,
    help="Name of the HTTPRoute and flags ConfigMap compared across regions (default: the plan's service).",
)
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
    bucket: str | None,
    prefix: str | None,
    stack: str | None,
    stacks_dir: str,
    as_json: bool,
    push_to: str | None,
    stay: bool,
    zone: str | None,
    record: str | None,
    endpoints: tuple[str, ...],
    kubeconfigs: tuple[str, ...],
    kube_contexts: tuple[str, ...],
    namespace: str | None,
    service: str | None,
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
    context = _stack_context(plan_path, stack, stacks_dir)
    plan, options = context.plan, context.options
    env = _env_file(env_path)
    configs = {**env_kubeconfigs(env), **_pairs(kubeconfigs, "--kubeconfig")}
    urls = {**(options.probe_urls if options else {}), **_pairs(endpoints, "--endpoint")}
    dr = plan.objectives.disaster_recovery
    for region in dr.regions:
        if region not in urls:
            where = f" (or failover.probeUrls in Pulumi.{stack}.yaml)" if stack else ""
            raise UserError(f"--endpoint: no probe URL for region {region} (write {region}=URL{where})")
    zone = zone or (options.zone if options else "") or "markethub.test."
    record = record or (options.record if options else "") or "api.markethub.test."
    namespace = namespace or (options.namespace if options else "markethub")
    clusters: dict[str, tuple[str | None, str | None]] = {r: (c, None) for r, c in configs.items()}
    for region, name in _pairs(kube_contexts, "--kube-context").items():
        clusters[region] = (configs.get(region), name)
    for region, (path, kube_context) in context.clusters.items():
        clusters.setdefault(region, (path, kube_context))
    bucket, prefix = env_repository(env, bucket, prefix)
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
        service=service or (options.service if options else "") or plan.service,
        bucket=_bucket(bucket, options),
        prefix=_prefix(prefix, options, plan),
        stacks_dir=Path(stacks_dir),
    )
    endpoint_url = aws_endpoint_url or (options.s3_endpoint if options else "") or env_aws_endpoint(env)
    route53 = aws_client("route53", endpoint_url, dr.primary)
    s3 = aws_client("s3", endpoint_url, dr.primary)
    if ensure_records:
        ensure_failover_records(route53, target, dr.primary)
    workloads = KubernetesWorkloads(
        {r: Path(p) if p else None for r, (p, _) in clusters.items()},
        namespace,
        contexts={r: c for r, (_, c) in clusters.items() if c},
        service=target.service,
    )
    with httpx.Client(timeout=5.0) as http:
        report = FailoverDrill(
            plan=plan,
            target=target,
            route53=route53,
            s3=s3,
            workloads=workloads,
            http=http,
            live=workloads,
            fault=_fault(inject_fault),
        ).run(execute=execute, stay=stay)
    _finish(report, report_dir, commit, push_to, context, as_json)


def _bucket(flag: str | None, options: DrillOptions | None) -> str:
    return flag or (options.bucket if options else "") or "markethub-backups"


def _prefix(flag: str | None, options: DrillOptions | None, plan: Plan | None = None) -> str:
    service = plan.service if plan else "markethub-mobile"
    return flag or (options.prefix if options else "") or f"pgbackrest/{service}"


def _repository(
    plan: Plan, options: DrillOptions | None, bucket: str | None, prefix: str | None, endpoint: str | None
) -> Any:
    from runbooks.pgbackrest import Repository

    return Repository(
        bucket=_bucket(bucket, options),
        path="/" + _prefix(prefix, options, plan).strip("/"),
        region=(options.region if options else "") or plan.objectives.disaster_recovery.primary,
        stanza=(options.stanza if options else "") or plan.service,
        endpoint=endpoint or "",
    )


def pgbackrest_env(plan: Plan, repo: Any) -> dict[str, str]:
    """pgBackRest's settings: from the flags and the plan, then whatever ``PGBACKREST_*`` the
    process already has (a CronJob sets them all), which wins. S3 keys: pgBackRest's own variables,
    else the AWS ones, else the moto stand-in's for a loopback endpoint."""
    from runbooks.pgbackrest import RetentionError, repository_env

    try:
        env = repository_env(repo, plan.objectives)
    except (RetentionError, ValueError) as err:
        raise UserError(str(err)) from err
    env.update({k: v for k, v in os.environ.items() if k.startswith("PGBACKREST_")})
    if "PGBACKREST_REPO1_S3_KEY" not in env and env.get("PGBACKREST_REPO1_S3_KEY_TYPE") != "web-id":
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            env["PGBACKREST_REPO1_S3_KEY"] = os.environ["AWS_ACCESS_KEY_ID"]
            env["PGBACKREST_REPO1_S3_KEY_SECRET"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        elif env.get("PGBACKREST_REPO1_STORAGE_VERIFY_TLS") == "n":
            env["PGBACKREST_REPO1_S3_KEY"] = env["PGBACKREST_REPO1_S3_KEY_SECRET"] = "testing"
        else:
            env["PGBACKREST_REPO1_S3_KEY_TYPE"] = "auto"
    return env


@drill.command("backup-restore")
@_with_common
@click.option(
    "--source-dsn",
    envvar="DRILL_SOURCE_DSN",
    help="The database whose backups are drilled: the recovery target is marked there.",
)
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Cluster with Velero (default: the primary's)."
)
@click.option(
    "--velero-namespace", default="velero", show_default=True, help="Namespace of Velero's objects."
)
@click.option(
    "--namespace", default=None, help="Workload namespace to restore (default: the stack's, else markethub)."
)
@click.option(
    "--velero-wait",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the Velero Restore's final phase.",
)
@click.option(
    "--archive-wait",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the WAL past the recovery target to reach the archive.",
)
def backup_restore(
    execute: bool,
    plan_path: str | None,
    report_dir: str,
    commit: bool,
    env_path: str | None,
    aws_endpoint_url: str | None,
    bucket: str | None,
    prefix: str | None,
    stack: str | None,
    stacks_dir: str,
    as_json: bool,
    push_to: str | None,
    source_dsn: str | None,
    kubeconfig: str | None,
    velero_namespace: str,
    namespace: str | None,
    velero_wait: float,
    archive_wait: float,
) -> None:
    """Restore the database to a point in time from pgBackRest's chain and verify it; restore the
    newest Velero Backup."""
    from runbooks.backup_restore import KubernetesVelero, RestoreDrill, RestoreTarget, VeleroBounds

    context = _stack_context(plan_path, stack, stacks_dir)
    plan, options = context.plan, context.options
    env = _env_file(env_path)
    dr = plan.objectives.disaster_recovery
    if execute and not (source_dsn or env_database(env).get("dsn")):
        raise UserError("--source-dsn: required with --execute (or set DRILL_SOURCE_DSN)")
    kubeconfig = kubeconfig or env_kubeconfigs(env).get(dr.primary)
    kube_context = None
    if not kubeconfig and dr.primary in context.clusters:
        kubeconfig, kube_context = context.clusters[dr.primary]
    velero = (
        KubernetesVelero(Path(kubeconfig) if kubeconfig else None, velero_namespace, context=kube_context)
        if kubeconfig or kube_context
        else None
    )
    endpoint_url = (
        aws_endpoint_url
        or (options.s3_endpoint if options else "")
        or env_database(env).get("s3_endpoint")
        or env_aws_endpoint(env)
    )
    repo = _repository(plan, options, *env_repository(env, bucket, prefix), endpoint_url)
    s3 = aws_client("s3", endpoint_url, repo.region)
    report = RestoreDrill(
        plan=plan,
        target=RestoreTarget(
            repository=repo,
            source_dsn=source_dsn or env_database(env).get("dsn", ""),
            namespace=namespace or (options.namespace if options else "markethub"),
            env=pgbackrest_env(plan, repo) if execute else {},  # a dry run runs no pgBackRest
            archive_wait=archive_wait,
        ),
        s3=s3,
        velero=velero,
        velero_bounds=VeleroBounds(attempts=int(velero_wait) + 1, interval=1.0, deadline=velero_wait),
    ).run(execute=execute)
    _finish(report, report_dir, commit, push_to, context, as_json)


@drill.command("backup")
@click.option(
    "--type",
    "kind",
    metavar="full|incremental",
    required=True,
    help="pgBackRest backup type (the CronJobs run these on the plan's schedule).",
)
@click.option(
    "--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file (default: the packaged plan)."
)
@click.option("--env", "env_path", type=click.Path(dir_okay=False), help="The local environment's env.json.")
@click.option(
    "--aws-endpoint-url", envvar="AWS_ENDPOINT_URL", help="S3 endpoint (https; moto's TLS front locally)."
)
@click.option("--bucket", default=None, help="S3 bucket of the pgBackRest repository.")
@click.option("--prefix", default=None, help="Repository path in --bucket (default: pgbackrest/<service>).")
@click.option("--create-bucket", is_flag=True, help="Create --bucket if it does not exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the backup's label as JSON.")
def backup(
    kind: str,
    plan_path: str | None,
    env_path: str | None,
    aws_endpoint_url: str | None,
    bucket: str | None,
    prefix: str | None,
    create_bucket: bool,
    as_json: bool,
) -> None:
    """Take a pgBackRest backup now (``pgbackrest stanza-create`` and ``backup --type``), as the CronJobs do.

    The database is pgBackRest's ``pg1-*`` settings (``PGBACKREST_PG1_PATH`` and friends)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from runbooks.backup import take_backup
    from runbooks.pgbackrest import BACKUP_TYPES

    if kind not in BACKUP_TYPES:
        raise UserError(f"--type: {kind!r} is not one of {', '.join(BACKUP_TYPES)}")
    plan = _load_plan(plan_path)
    data = _env_file(env_path)
    local = env_database(data)
    endpoint = aws_endpoint_url or local.get("s3_endpoint") or env_aws_endpoint(data)
    repo = _repository(plan, None, *env_repository(data, bucket, prefix), endpoint)
    try:
        if create_bucket:
            s3 = aws_client("s3", endpoint, repo.region)
            if repo.bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
                location = {} if repo.region == "us-east-1" else {"LocationConstraint": repo.region}
                s3.create_bucket(
                    Bucket=repo.bucket, **({"CreateBucketConfiguration": location} if location else {})
                )
        # The local database's pgBackRest settings (where its data is) under the process's own.
        local_env = {k: str(v) for k, v in (local.get("pgbackrest") or {}).items() if k not in os.environ}
        label = take_backup(kind, {**pgbackrest_env(plan, repo), **local_env})
    except (BotoCoreError, ClientError) as err:
        raise UserError(f"s3://{repo.bucket}: {err}") from err
    except RuntimeError as err:  # pgbackrest failed
        raise UserError(str(err)) from err
    if as_json:
        click.echo(
            json.dumps({"bucket": repo.bucket, "path": repo.path, "stanza": repo.stanza, "label": label})
        )
    else:
        click.echo(f"backup {label} in s3://{repo.bucket}{repo.path} (stanza {repo.stanza})")
