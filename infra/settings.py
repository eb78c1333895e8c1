"""A stack's settings: every ``markethub-rollout:*`` config key the Pulumi program reads, typed.

``read_settings`` turns the raw config mapping (keys without the ``markethub-rollout:`` prefix,
values as Pulumi hands them: strings, or JSON text for structured values) into ``StackSettings``.
Bad values raise ``UserError`` naming the stack file and the key, so ``pulumi preview`` fails with
one line instead of a traceback deep inside a component.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN
from rollout_policies.stack_file import namespaced, read_config, stack_name
from rollout_policies.state import RolloutState

NAMESPACE = "markethub-rollout"
# RFC 7230 token characters: what Gateway API accepts as a header name.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_PROMETHEUS_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class RegionRole(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"

    @property
    def failover(self) -> str:
        """The Route 53 failover value external-dns writes for this role."""
        return self.value.upper()


class Environment(StrEnum):
    PRODUCTION = "production"
    LOCAL = "local"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class GatewayRef(_Section):
    """The Gateway the HTTPRoute attaches to (run by the platform team, not by this program)."""

    name: str = "public"
    namespace: str = "gateway"
    section_name: str | None = None


class CustomMetric(_Section):
    """A per-pod metric the HPA also scales on (served by a metrics adapter such as prometheus-adapter)."""

    name: str = "http_requests_per_second"
    average_value: str = "50"


class Resources(_Section):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "250m", "memory": "256Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "512Mi"})


class Probes(_Section):
    readiness_path: str = "/healthz/ready"
    liveness_path: str = "/healthz/live"
    initial_delay_seconds: int = Field(default=5, ge=0)
    period_seconds: int = Field(default=10, ge=1)


class Backup(_Section):
    """Velero schedules, and pgBackRest's full and incremental backup CronJobs (WAL is archived by
    the database's own ``archive_command``)."""

    enabled: bool = True
    velero_namespace: str = "velero"
    storage_location: str = "default"
    bucket: str = ""
    # The pgBackRest repository path in the bucket is <prefix>/<service>; the stanza is the service.
    prefix: str = "pgbackrest"
    # A Secret in the service's namespace whose key ``url`` is the libpq connection URL of the
    # database: the restore drill marks its recovery target there.
    database_secret: str = "markethub-db"
    # Where pgBackRest reaches the database's files: its host's pgBackRest TLS server (empty: the
    # data folder is local to the job, as in the rig), the data folder, PostgreSQL's port.
    database_host: str = ""
    database_path: str = "/var/lib/postgresql/15/main"
    database_port: int = Field(default=5432, ge=1, le=65535)
    # A Secret holding ca.crt, tls.crt and tls.key for the TLS connection to ``database_host``.
    database_tls_secret: str = "markethub-pgbackrest-tls"
    # Set for an S3-compatible endpoint (https://127.0.0.1:PORT for moto behind the rig's TLS
    # front); empty means AWS itself.
    s3_endpoint: str = ""
    # A Secret with keys ``key`` and ``secret`` for S3; empty: the pod's web identity (IRSA).
    s3_credentials_secret: str = ""


class Failover(_Section):
    """Route 53 failover records written by external-dns from the public Service's annotations."""

    hostname: str = ""
    # Region -> the id of the Route 53 health check of its probe URL, as `rollout bootstrap
    # health-checks` created it (it writes this map into every region's stack); each region's record
    # carries its own region's check.
    health_checks: dict[str, str] = Field(default_factory=dict)
    # Where the record points: the Gateway's load-balancer name. Empty: the Service's own address.
    target: str = ""
    ttl: int = Field(default=60, ge=1)
    service_type: str = "ClusterIP"
    # The Route 53 hosted zone holding ``hostname`` (e.g. ``markethub.example.``): the drill's zone.
    zone: str = ""
    # Region -> URL that proves the region serves (every region, the same map in each region's
    # stack): the region failover drill probes these.
    probe_urls: dict[str, str] = Field(default_factory=dict)
    # Region -> the kubeconfig context of its cluster in the drill CronJob's kubeconfig Secret
    # (drills.kubeconfigSecret): a pod has no other stack files to find the other region's cluster.
    kube_contexts: dict[str, str] = Field(default_factory=dict)

    @field_validator("service_type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in ("ClusterIP", "LoadBalancer"):
            raise ValueError("must be ClusterIP or LoadBalancer")
        return value


class Alerts(_Section):
    """Where rollback alerts go: the tool's Alertmanager webhook receiver (``rollout serve``)."""

    # Empty: the RolloutController's own Service in the service's namespace.
    webhook_url: str = ""
    # Labels the Prometheus operator's ruleSelector and the Grafana sidecar look for.
    rule_labels: dict[str, str] = Field(default_factory=lambda: {"release": "prometheus"})
    dashboard_namespace: str = ""
    # PromQL giving requests per second by colour: the dashboard's live traffic split.
    traffic_query: str = ""
    # The gauge the controller (`rollout serve`) exports with every non-Prometheus measurement the
    # rules read, labelled metric and service (rollout_policies.alerting.collector).
    bridge_metric: str = "markethub_rollout_measurement"
    # A trigger's missing-data rule (absent()) waits at least this long before it notifies.
    missing_data_for: str = "2m"
    # Taken off each trigger's window in its rule's `for:`, so the rollback is live within the
    # window: the rule group's evaluation interval (30s), a scrape (30s at most; the controller's
    # ServiceMonitor scrapes every 15s and its collector measures every 15s), and the webhook, commit
    # and apply (20s; the dress rehearsal measured 10-14s for a real `pulumi up` of the route).
    # It was 35s until the rehearsal reported that every trigger would miss its window with it.
    detection_budget: str = "80s"


class ControllerProviders(_Section):
    """Where the controller's collector finds the plan's non-Prometheus metric sources.

    Only what is not secret: the DSN of the SQL provider and static AWS keys come from
    ``controller.providersSecret``. Each value becomes the ``ROLLOUT_*`` variable
    ``ProviderSettings.from_env`` reads (infra/controller.py), set only for a provider a rule reads.
    """

    # Name -> base URL of each JSON API the plan's json_http metrics name (options.base, url_env).
    json_base_urls: dict[str, str] = Field(default_factory=dict)
    # Empty: the stack's own region.
    cloudwatch_region: str = ""
    # Empty: AWS itself (a stand-in such as a moto server in tests).
    cloudwatch_endpoint_url: str = ""
    timeout: float | None = Field(default=None, gt=0)
    attempts: int | None = Field(default=None, ge=1)

    @field_validator("json_base_urls")
    @classmethod
    def _base_urls(cls, value: dict[str, str]) -> dict[str, str]:
        # They travel as one variable, name=url,name=url (ROLLOUT_JSON_BASE_URLS).
        for name, url in value.items():
            if not name or "," in name or "=" in name or not url or "," in url:
                raise ValueError(f"{name!r}: {url!r} is not a name and a URL without commas")
        return value


class Controller(_Section):
    """The controller (``rollout serve``) this program deploys beside the service (infra/controller.py).

    Secrets are referenced by name, never created here: the team creates them (docs/deploy.md).
    """

    enabled: bool = True
    image: str = "ghcr.io/markethub/markethub-rollout:0.1.0"
    # The https (or file://, ssh://) URL of the rollout repository the controller clones and commits to.
    repository: str = ""
    branch: str = "main"
    # Folder of Pulumi.yaml and the stack configs inside the repository (empty: its top).
    config_dir: str = ""
    port: int = Field(default=8080, ge=1, le=65535)
    # Also run `rollout watch` (polling Prometheus) beside `rollout serve`.
    watch: bool = False
    prometheus_url: str = ""
    # owner/name on GitHub, for marking open promotion pull requests stale after a rollback; empty:
    # taken from a https://github.com/<owner>/<name>(.git) repository URL, else no forge.
    forge_repository: str = ""
    # The forge's API base URL for that repository: empty for github.com; GitHub Enterprise Server's
    # is https://<host>/api/v3.
    forge_url: str = ""
    webhook_secret: str = "rollout-webhook"
    git_secret: str = "rollout-git"
    forge_secret: str = "rollout-forge"
    pulumi_secret: str = "rollout-pulumi"
    notify_secret: str = "rollout-notify"
    # The metric providers' credentials: key ``sql-dsn`` (the SQL provider's DSN), optional
    # ``aws-access-key-id`` and ``aws-secret-access-key`` (static keys; without them the AWS SDK uses
    # the pod's web identity, ``awsRoleArn``), and one key per plan ``token_env`` variable.
    providers_secret: str = "rollout-providers"
    providers: ControllerProviders = ControllerProviders()
    # IAM role for CloudWatch (EKS IRSA): written as the ServiceAccount's eks.amazonaws.com/role-arn,
    # so the pod gets a web identity and no static AWS key is needed.
    aws_role_arn: str = ""
    # How often Prometheus scrapes the controller's /metrics (its ServiceMonitor).
    scrape_interval: str = "15s"
    resources: Resources = Resources(
        requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "1Gi"}
    )

    @field_validator("scrape_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if not _PROMETHEUS_DURATION.match(value):
            raise ValueError(f"not a Prometheus duration such as 15s or 1m: {value!r}")
        return value

    @model_validator(mode="after")
    def _watch(self) -> Controller:
        if self.watch and not self.prometheus_url:
            raise ValueError("watch needs prometheusUrl (the Prometheus `rollout watch` polls)")
        return self


class Drills(_Section):
    """The drill and backup CronJobs: the rollout image runs ``rollout drill ...`` in the cluster."""

    enabled: bool = True
    image: str = "ghcr.io/markethub/markethub-rollout:latest"
    # A cron expression; empty derives it from the plan's disaster_recovery.drill_every.
    schedule: str = ""
    # A Secret whose key ``config`` is a kubeconfig with a context per region (the failover drill
    # reads both regions' Deployments); empty: the drills see only their own cluster.
    kubeconfig_secret: str = ""
    # Where drill reports are committed (reports/drills/): the rollout repository's git URL, and a
    # Secret whose key ``token`` may push to it. Empty URL: reports go to the job's log only.
    reports_repository: str = ""
    git_secret: str = "markethub-rollout-git"
    # A Secret whose keys are the plan's notification variables (SLACK_WEBHOOK_URL, ...): drills post.
    notify_secret: str = "markethub-rollout-notify"


class StackSettings(_Section):
    """Everything a stack's config says, validated. Field names are the config keys in camelCase."""

    stack: str = Field(default="dev", exclude=True)
    rollout: RolloutState
    plan: str = str(DEFAULT_PLAN)
    environment: Environment = Environment.LOCAL
    region: str
    region_role: RegionRole
    namespace: str = "markethub"
    create_namespace: bool = True
    service_name: str = ""  # empty: the plan's service name
    image: str = Field(min_length=1)
    port: int = Field(default=8080, ge=1, le=65535)
    router: str = "gateway-api"
    gateway: GatewayRef = GatewayRef()
    hostnames: tuple[str, ...] = ()
    cohort_header: str = "x-markethub-cohort"
    cohort_value: str = "beta"
    min_replicas: int = Field(default=4, ge=1)
    max_replicas: int = Field(default=20, ge=1)
    headroom: float = Field(default=2.0, ge=1.0)
    cpu_utilization: int = Field(default=70, ge=1, le=100)
    custom_metric: CustomMetric = CustomMetric()
    resources: Resources = Resources()
    probes: Probes = Probes()
    disruption_max_unavailable: int = Field(default=1, ge=1)
    backup: Backup = Backup()
    failover: Failover = Failover()
    alerts: Alerts = Alerts()
    drills: Drills = Drills()
    controller: Controller = Controller()

    @field_validator("cohort_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"not an HTTP header name: {value!r}")
        return value

    @field_validator("namespace", "service_name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if value and not _DNS_LABEL.match(value):
            raise ValueError(f"not a Kubernetes name (lower-case letters, digits and '-'): {value!r}")
        return value

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


# The keys read from config, in camelCase as they appear in Pulumi.<stack>.yaml.
KEYS: tuple[str, ...] = tuple(
    (field.alias or name) for name, field in StackSettings.model_fields.items() if name != "stack"
)


# The config keys each component reads. docs/infra/<page>.md lists them; a test keeps the two in step.
COMPONENT_KEYS: dict[str, tuple[str, ...]] = {
    "program": ("rollout", "plan", "environment", "namespace", "createNamespace", "serviceName"),
    "bluegreen-service": (
        "rollout",
        "image",
        "port",
        "probes",
        "resources",
        "disruptionMaxUnavailable",
        "environment",
        "region",
    ),
    "traffic-split": (
        "rollout",
        "plan",
        "router",
        "gateway",
        "hostnames",
        "cohortHeader",
        "cohortValue",
        "port",
    ),
    "autoscaling": ("rollout", "minReplicas", "maxReplicas", "headroom", "cpuUtilization", "customMetric"),
    "backup-schedule": ("backup", "region", "namespace", "drills"),
    "regional-failover": ("region", "regionRole", "failover", "port"),
    "rollback-alerts": ("rollout", "alerts", "region"),
    "feature-flags": ("rollout",),
    "drill-schedule": ("plan", "regionRole", "drills", "namespace", "backup", "failover"),
    "rollout-controller": ("controller", "plan", "alerts", "region"),
}


def read_settings(raw: Mapping[str, Any], *, stack: str) -> StackSettings:
    """Validate one stack's ``markethub-rollout:*`` config (``raw`` keys carry no prefix)."""
    where = f"Pulumi.{stack}.yaml"
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KEYS:
            raise UserError(f"{where}: {NAMESPACE}:{key}: unknown key (known: {', '.join(sorted(KEYS))})")
        data[key] = _decode(value)
    if "rollout" not in data:
        raise UserError(f"{where}: {NAMESPACE}:rollout: missing (the stack's rollout state)")
    if "environment" not in data:
        # A stack named prod-* is production unless it says otherwise: backups can't be forgotten.
        data["environment"] = "production" if stack.startswith("prod") else "local"
    try:
        settings = StackSettings.model_validate({**data, "stack": stack})
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{where}: {NAMESPACE}:{path}: {first['msg']}") from None
    if settings.min_replicas > settings.max_replicas:
        raise UserError(f"{where}: {NAMESPACE}:minReplicas: {settings.min_replicas} exceeds maxReplicas")
    if settings.controller.enabled and not settings.controller.repository:
        raise UserError(
            f"{where}: {NAMESPACE}:controller.repository: required while the controller is enabled "
            "(the URL of the rollout repository it commits rollbacks to), or set controller.enabled: false"
        )
    return settings


def stack_file_config(path: Path) -> dict[str, str]:
    """A stack file's ``markethub-rollout:*`` values as Pulumi hands them to the program: structured
    values as JSON text, scalars as strings (keys without the prefix)."""
    return as_pulumi_config(namespaced(read_config(path), NAMESPACE, str(path)))


def as_pulumi_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Config values as the Pulumi CLI hands them to the program: structured values as JSON text,
    booleans as ``true``/``false``, other scalars as strings. ``read_settings`` decodes them."""
    return {key: _as_pulumi_string(value) for key, value in values.items()}


def settings_from_stack_file(path: Path) -> StackSettings:
    """Read and validate one ``Pulumi.<stack>.yaml`` the way the program would see it."""
    return read_settings(stack_file_config(path), stack=stack_name(path))


def _as_pulumi_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(value: Any) -> Any:
    """Pulumi hands structured config over as JSON text; plain strings stay strings."""
    if isinstance(value, str) and (value[:1] in ("{", "[") or value in ("true", "false")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@dataclass(frozen=True)
class DrillOptions:
    """What the drills take from a stack's config. The CronJobs pass these as flags (a pod has no
    stack files); ``rollout drill --stack`` reads them from the same file through this function."""

    namespace: str
    bucket: str
    prefix: str
    s3_endpoint: str
    zone: str
    record: str
    probe_urls: dict[str, str]
    # The HTTPRoute and flags ConfigMap the failover drill compares across regions.
    service: str = ""
    kube_contexts: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    stanza: str = "markethub-mobile"


def drill_options(settings: StackSettings, service: str) -> DrillOptions:
    """Bucket and prefix are pgBackRest's repository, where the backup CronJobs write; zone, record
    and probe URLs are the failover records' (``failover``)."""
    hostname = settings.failover.hostname
    return DrillOptions(
        namespace=settings.namespace,
        bucket=settings.backup.bucket or f"{service}-backups",
        prefix=f"{settings.backup.prefix}/{service}",
        s3_endpoint=settings.backup.s3_endpoint,
        zone=_fqdn(settings.failover.zone),
        record=_fqdn(hostname),
        probe_urls=dict(settings.failover.probe_urls),
        service=service,
        kube_contexts=dict(settings.failover.kube_contexts),
        region=settings.region or "us-east-1",
        stanza=service,
    )


def drill_flags(options: DrillOptions, drill: str) -> list[str]:
    """The ``rollout drill <drill>`` flags that carry ``options`` (empty values are left out, so
    the command names what is missing in one line rather than running against a default)."""
    flags = ["--bucket", options.bucket, "--prefix", options.prefix]
    if options.s3_endpoint:
        flags += ["--aws-endpoint-url", options.s3_endpoint]
    if drill in ("backup-restore", "region-failover"):
        flags += ["--namespace", options.namespace]
    if drill == "region-failover":
        if options.zone:
            flags += ["--zone", options.zone]
        if options.record:
            flags += ["--record", options.record]
        for region, url in sorted(options.probe_urls.items()):
            flags += ["--endpoint", f"{region}={url}"]
        if options.service:
            flags += ["--service", options.service]
        for region, context in sorted(options.kube_contexts.items()):
            flags += ["--kube-context", f"{region}={context}"]
    return flags


def _fqdn(name: str) -> str:
    return name if not name or name.endswith(".") else f"{name}."
