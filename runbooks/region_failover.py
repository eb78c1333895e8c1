"""The region failover drill: preflight, move DNS to the secondary region, verify, measure, fail back.

DNS is a pair of Route 53 failover records (one per region, ``SetIdentifier`` = region name, each with
a health check). Route 53 answers with the PRIMARY record while its health check passes. The drill
fails over the way a planned regional evacuation does: one atomic change batch that makes the
secondary region's record PRIMARY and the primary's SECONDARY; failing back swaps them again.

Safety: once DNS has been touched, any failure (including an injected fault) runs the
``automatic-failback`` step, and the drill never ends with traffic moved unless ``stay=True``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan
from runbooks.backup import latest_backup
from runbooks.health_checks import ensure_health_checks
from runbooks.pgbackrest import Repository
from runbooks.report import DrillRecorder, DrillReport, Step, StepFailed, StepSkipped, utc_now

DRILL = "region-failover"


STEPS: tuple[Step, ...] = (
    Step(
        "preflight-secondary-ready", "the secondary's Deployments are Available with the primary's capacity"
    ),
    Step(
        "preflight-regions-agree",
        "the secondary serves the primary's traffic weights, cohort rule and feature flags",
    ),
    Step("preflight-backup-fresh", "the newest database backup in S3 is within the RPO"),
    Step("preflight-dns-on-primary", "DNS answers with the primary region and its endpoint serves"),
    Step("dns-failover", "make the secondary's failover record PRIMARY", "Route 53: swap failover roles"),
    Step(
        "verify-secondary-serves", "DNS answers with the secondary and its endpoint serves; time to recovery"
    ),
    Step(
        "dns-failback",
        "make the primary's failover record PRIMARY again",
        "Route 53: swap failover roles back",
    ),
    Step("verify-primary-serves", "DNS answers with the primary again and its endpoint serves"),
    Step(
        "automatic-failback",
        "after any failure once DNS was touched: put the primary back and verify it serves",
        "Route 53: restore the primary's role",
    ),
)
STEP_NAMES = frozenset(step.name for step in STEPS)
_CHANGES = {step.name: step.changes for step in STEPS}


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class RegionTarget:
    """One region: the host its failover record answers with, and the URL that proves it serves."""

    host: str  # the record's value (CNAME), e.g. us-east-1.api.markethub.example
    probe_url: str  # e.g. https://us-east-1.api.markethub.example/healthz
    kubeconfig: Path | None = None


@dataclass(frozen=True)
class FailoverTarget:
    zone: str  # hosted zone name, e.g. markethub.example.
    record: str  # failover record name, e.g. api.markethub.example.
    regions: Mapping[str, RegionTarget]
    namespace: str = "markethub"  # the Kubernetes namespace of the workloads
    service: str = "markethub-mobile"  # the HTTPRoute's name and the flags ConfigMap's prefix
    bucket: str = "markethub-backups"
    prefix: str = "pgbackrest"  # the pgBackRest repository path in the bucket
    stacks_dir: Path = Path(".")


@dataclass(frozen=True)
class Bounds:
    """How long the drill polls before it gives up (never a plan duration: these are seconds of I/O)."""

    probe_attempts: int = 30
    probe_interval: float = 0.5
    switch_deadline: float = 120.0


# ------------------------------------------------------------------ workloads (kubernetes, behind a seam)


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    replicas: int  # desired
    available_replicas: int
    available: bool  # the Available condition is True


class Workloads(Protocol):
    """The Deployments of the drill's namespace in one region."""

    def deployments(self, region: str) -> tuple[DeploymentStatus, ...]: ...


class KubernetesWorkloads:
    """Reads Deployments, the HTTPRoute and the flags ConfigMap with the kubernetes client: per region
    a kubeconfig file, or a context of the default kubeconfig ($KUBECONFIG), or both."""

    def __init__(
        self,
        kubeconfigs: Mapping[str, Path | None],
        namespace: str,
        contexts: Mapping[str, str] | None = None,
        service: str = "markethub-mobile",
    ) -> None:
        self._kubeconfigs = dict(kubeconfigs)
        self._contexts = dict(contexts or {})
        self._namespace = namespace
        self._service = service

    def _api(self, region: str) -> Any:
        from kubernetes import config  # imported on use: slow to import

        path = self._kubeconfigs.get(region)
        context = self._contexts.get(region)
        if path is None and context is None:
            raise StepSkipped(f"no kubeconfig for region {region}")
        return config.new_client_from_config(config_file=str(path) if path else None, context=context)

    def deployments(self, region: str) -> tuple[DeploymentStatus, ...]:
        from kubernetes import client

        api = client.AppsV1Api(self._api(region))
        result = []
        for item in api.list_namespaced_deployment(self._namespace, _request_timeout=10).items:
            conditions = {c.type: c.status for c in (item.status.conditions or [])}
            result.append(
                DeploymentStatus(
                    name=item.metadata.name,
                    replicas=int(item.spec.replicas or 0),
                    available_replicas=int(item.status.available_replicas or 0),
                    available=conditions.get("Available") == "True",
                )
            )
        return tuple(result)

    def served(self, region: str) -> ServedRollout:
        """The region's HTTPRoute ``<service>`` and flags ConfigMap ``<service>-flags``; a missing
        object reads as absent (a difference), any other API error fails the check."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = self._api(region)
        try:
            try:
                route = client.CustomObjectsApi(api).get_namespaced_custom_object(
                    "gateway.networking.k8s.io", "v1", self._namespace, "httproutes", self._service,
                    _request_timeout=10,
                )  # fmt: skip
            except ApiException as err:
                if err.status != 404:
                    raise StepFailed(f"{region}: HTTPRoute {self._service}: HTTP {err.status}") from err
                route = None
            name = self._service + FLAGS_CONFIG_MAP_SUFFIX
            try:
                config_map = client.CoreV1Api(api).read_namespaced_config_map(
                    name, self._namespace, _request_timeout=10
                )
                document = json.loads((config_map.data or {}).get(FLAGS_FILE, "null"))
            except ApiException as err:
                if err.status != 404:
                    raise StepFailed(f"{region}: ConfigMap {name}: HTTP {err.status}") from err
                document = None
            except ValueError as err:
                raise StepFailed(f"{region}: ConfigMap {name}: {FLAGS_FILE} is not JSON: {err}") from err
        finally:
            api.close()
        return served_from_objects(route, document if isinstance(document, dict) else None, self._service)


def capacity_problems(
    primary: Iterable[DeploymentStatus] | None, secondary: Iterable[DeploymentStatus]
) -> list[str]:
    """Why the secondary cannot take the primary's load (empty when it can). Pure."""
    secondary_by_name = {d.name: d for d in secondary}
    if not secondary_by_name:
        return ["the secondary region runs no Deployments in the namespace"]
    problems = []
    for deployment in secondary_by_name.values():
        if not deployment.available:
            problems.append(f"{deployment.name} is not Available in the secondary")
    for deployment in primary or ():
        twin = secondary_by_name.get(deployment.name)
        if twin is None:
            problems.append(f"{deployment.name} runs in the primary but not in the secondary")
        elif twin.available_replicas < deployment.available_replicas:
            problems.append(
                f"{deployment.name}: the secondary has {twin.available_replicas} available replicas, "
                f"the primary's load needs {deployment.available_replicas}"
            )
    return problems


# ------------------------------------------------------------------ what each region serves


# The names the Pulumi program gives the flags ConfigMap (infra/flags.py; runbooks do not import infra,
# a test checks the two agree).
FLAGS_CONFIG_MAP_SUFFIX = "-flags"
FLAGS_FILE = "flags.json"


@dataclass(frozen=True)
class ServedRollout:
    """What one region's API server says it serves: the weighted rule's split, the cohort rule, the flags.

    ``weights`` is colour -> percent (None: no HTTPRoute weighing blue and green); ``cohort_rule`` is
    each header-matched rule as (headers, backends), in order; ``flags`` is flag key -> default variant
    (None: no flags ConfigMap).
    """

    weights: Mapping[str, int] | None
    cohort_rule: tuple[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], ...]
    flags: Mapping[str, str] | None


class LiveRollouts(Protocol):
    """What each region serves, read from its cluster."""

    def served(self, region: str) -> ServedRollout: ...


def served_from_objects(
    route: Mapping[str, Any] | None, flags_document: Mapping[str, Any] | None, service: str
) -> ServedRollout:
    """A region's HTTPRoute and flagd document as a ``ServedRollout``. Pure."""
    from rollout_policies.gitops.kube_live import route_weights

    weights = route_weights(route, service) if route else None
    cohort = []
    for rule in (route or {}).get("spec", {}).get("rules", []) or []:
        headers = tuple(
            sorted(
                (str(h.get("name", "")).lower(), str(h.get("value", "")))
                for match in rule.get("matches", []) or []
                for h in match.get("headers", []) or []
            )
        )
        if headers:
            backends = tuple(sorted(str(ref.get("name", "")) for ref in rule.get("backendRefs", []) or []))
            cohort.append((headers, backends))
    flags = None
    if flags_document is not None:
        flags = {
            str(key): str(flag.get("defaultVariant", "")) if isinstance(flag, dict) else str(flag)
            for key, flag in (flags_document.get("flags") or {}).items()
        }
    return ServedRollout(
        weights={colour.value: weight for colour, weight in weights.items()} if weights else None,
        cohort_rule=tuple(cohort),
        flags=flags,
    )


def rollout_differences(
    primary: str, primary_serves: ServedRollout, secondary: str, secondary_serves: ServedRollout
) -> list[str]:
    """What the secondary serves differently from the primary (empty when they agree). Pure.

    Unreadable objects are differences too: a region whose route or flags cannot be read is not
    known to serve the same rollout.
    """
    problems = []
    for region, serves in ((primary, primary_serves), (secondary, secondary_serves)):
        if serves.weights is None:
            problems.append(f"{region} has no HTTPRoute weighing blue and green")
        if serves.flags is None:
            problems.append(f"{region} has no feature flags ConfigMap")
    if (
        primary_serves.weights
        and secondary_serves.weights
        and primary_serves.weights != secondary_serves.weights
    ):
        problems.append(
            f"weights: {primary} serves {describe_weights(primary_serves.weights)}, "
            f"{secondary} {describe_weights(secondary_serves.weights)}"
        )
    if primary_serves.cohort_rule != secondary_serves.cohort_rule:
        problems.append(
            f"cohort rule: {primary} has {describe_cohort(primary_serves.cohort_rule)}, "
            f"{secondary} {describe_cohort(secondary_serves.cohort_rule)}"
        )
    if primary_serves.flags is not None and secondary_serves.flags is not None:
        ours, theirs = primary_serves.flags, secondary_serves.flags
        differing = [
            f"{key} {ours.get(key, 'absent')} in {primary}, {theirs.get(key, 'absent')} in {secondary}"
            for key in sorted(set(ours) | set(theirs))
            if ours.get(key) != theirs.get(key)
        ]
        if differing:
            problems.append("flags: " + ", ".join(differing))
    return problems


def describe_weights(weights: Mapping[str, int]) -> str:
    return " / ".join(f"{colour} {weights[colour]}%" for colour in sorted(weights))


def describe_cohort(rules: Iterable[tuple[tuple[tuple[str, str], ...], tuple[str, ...]]]) -> str:
    shown = [
        " & ".join(f"{name}={value}" for name, value in headers) + " -> " + ",".join(backends)
        for headers, backends in rules
    ]
    return "; ".join(shown) if shown else "no cohort rule"


# ------------------------------------------------------------------ DNS (Route 53 failover records)


@dataclass(frozen=True)
class FailoverRecord:
    region: str  # SetIdentifier
    role: str  # PRIMARY or SECONDARY
    value: str
    health_check_id: str | None
    ttl: int


class FailoverDns:
    """The failover record pair of one name, through a boto3 Route 53 client."""

    def __init__(self, route53: Any, zone: str, record: str) -> None:
        self._route53 = route53
        self.record = _fqdn(record)
        self.zone_id = _zone_id(route53, zone)

    def records(self) -> dict[str, FailoverRecord]:
        """Region -> its failover record."""
        found = {}
        paginator = self._route53.get_paginator("list_resource_record_sets")
        for page in paginator.paginate(HostedZoneId=self.zone_id):
            for rrset in page["ResourceRecordSets"]:
                if _fqdn(rrset["Name"]) != self.record or "Failover" not in rrset:
                    continue
                found[rrset["SetIdentifier"]] = FailoverRecord(
                    region=rrset["SetIdentifier"],
                    role=rrset["Failover"],
                    value=rrset["ResourceRecords"][0]["Value"],
                    health_check_id=rrset.get("HealthCheckId"),
                    ttl=int(rrset.get("TTL", 60)),
                )
        return found

    def healthy(self, health_check_id: str | None) -> bool:
        """Route 53's view of a health check: healthy when enough checkers report success."""
        if health_check_id is None:
            return True
        observations = self._route53.get_health_check_status(HealthCheckId=health_check_id)[
            "HealthCheckObservations"
        ]
        if not observations:
            return True  # Route 53 treats a health check with no data yet as healthy
        good = sum(1 for o in observations if o["StatusReport"]["Status"].startswith("Success"))
        return good / len(observations) >= 0.18  # Route 53's threshold for "healthy"

    def answer(self) -> str:
        """The region Route 53 answers with: the PRIMARY while healthy, else the SECONDARY."""
        records = self.records()
        roles = {record.role: record for record in records.values()}
        if set(roles) != {"PRIMARY", "SECONDARY"}:
            raise StepFailed(
                f"{self.record}: expected one PRIMARY and one SECONDARY record, found {sorted(roles)}"
            )
        primary = roles["PRIMARY"]
        return primary.region if self.healthy(primary.health_check_id) else roles["SECONDARY"].region

    def make_primary(self, region: str) -> None:
        """One atomic change batch: ``region``'s record becomes PRIMARY, the other SECONDARY."""
        records = self.records()
        if region not in records or len(records) != 2:
            raise StepFailed(
                f"{self.record}: no failover record pair with region {region} ({sorted(records)})"
            )
        changes = []
        for record in records.values():
            rrset: dict[str, Any] = {
                "Name": self.record,
                "Type": "CNAME",
                "SetIdentifier": record.region,
                "Failover": "PRIMARY" if record.region == region else "SECONDARY",
                "TTL": record.ttl,
                "ResourceRecords": [{"Value": record.value}],
            }
            if record.health_check_id:
                rrset["HealthCheckId"] = record.health_check_id
            changes.append({"Action": "UPSERT", "ResourceRecordSet": rrset})
        self._route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Comment": f"markethub-rollout drill: {region} PRIMARY", "Changes": changes},
        )


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _zone_id(route53: Any, zone: str) -> str:
    zones = route53.list_hosted_zones_by_name(DNSName=_fqdn(zone))["HostedZones"]
    for hosted in zones:
        if hosted["Name"] == _fqdn(zone):
            return str(hosted["Id"]).rsplit("/", 1)[-1]
    raise UserError(f"--zone: no Route 53 hosted zone named {_fqdn(zone)}")


def ensure_failover_records(route53: Any, target: FailoverTarget, primary: str) -> None:
    """Create the hosted zone and the failover records, each behind its region's health check
    (``ensure_health_checks``), if missing.

    In production external-dns writes the records from the Pulumi program's annotations; this is for
    the local environment and tests. Existing records keep their roles.
    """
    zone = _fqdn(target.zone)
    if not any(z["Name"] == zone for z in route53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]):
        route53.create_hosted_zone(Name=zone, CallerReference=f"markethub-drill-{uuid.uuid4()}")
    dns = FailoverDns(route53, zone, target.record)
    if dns.records():
        return
    checks = ensure_health_checks(
        route53, target.service, {region: endpoint.probe_url for region, endpoint in target.regions.items()}
    )
    changes = [
        _create_record(
            dns.record, region, endpoint.host, "PRIMARY" if region == primary else "SECONDARY", checks[region]
        )
        for region, endpoint in target.regions.items()
    ]
    route53.change_resource_record_sets(HostedZoneId=dns.zone_id, ChangeBatch={"Changes": changes})


def _create_record(record: str, region: str, host: str, role: str, health_check_id: str) -> dict[str, Any]:
    """The change that creates a region's failover record (CNAME to its host, behind its health check)."""
    return {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": record,
            "Type": "CNAME",
            "SetIdentifier": region,
            "Failover": role,
            "TTL": 60,
            "ResourceRecords": [{"Value": host}],
            "HealthCheckId": health_check_id,
        },
    }


# ------------------------------------------------------------------ HTTP probes


def probe(client: httpx.Client, url: str, region: str) -> str | None:
    """None when the endpoint serves as ``region``; otherwise why not.

    A 2xx answer serves. When the body is JSON naming a ``region``, it must be the expected one, so a
    probe cannot be fooled by the other region answering on a shared address.
    """
    try:
        response = client.get(url)
    except httpx.HTTPError as err:
        return f"{url}: {type(err).__name__}: {err}"
    if not response.is_success:
        return f"{url}: HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "region" in body and body["region"] != region:
        return f"{url}: answered as region {body['region']}, expected {region}"
    return None


# ------------------------------------------------------------------ the drill


Fault = Callable[[str], None]


@dataclass
class FailoverDrill:
    """Everything the drill touches, passed in: plan, target, clients, clocks and the fault hook."""

    plan: Plan
    target: FailoverTarget
    route53: Any
    s3: Any
    workloads: Workloads
    http: httpx.Client
    live: LiveRollouts
    now: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    bounds: Bounds = field(default_factory=Bounds)
    fault: Fault | None = None  # called with a step name at the end of that step's work (tests, demos)

    @property
    def primary(self) -> str:
        return self.plan.objectives.disaster_recovery.primary

    @property
    def secondary(self) -> str:
        others = [r for r in self.plan.objectives.disaster_recovery.regions if r != self.primary]
        if not others:
            raise UserError("objectives.disaster_recovery.regions: needs a region besides the primary")
        return others[0]

    def _inject(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    def run(self, *, execute: bool, stay: bool = False) -> DrillReport:
        self._check_endpoints()
        rec = DrillRecorder(DRILL, execute, self.now, self.monotonic, known_steps=STEP_NAMES)
        try:
            self._preflight(rec)
        except StepFailed:
            rec.notes.append("preflight failed: nothing was changed")
            rec.objective("time to recovery (RTO)", self._rto_seconds, None)
            return rec.finish()
        if not execute:
            for name in ("dns-failover", "verify-secondary-serves", "dns-failback", "verify-primary-serves"):
                rec.planned(name, _CHANGES[name] or "none (read-only)")
            rec.notes.append("dry run: pass --execute to move traffic")
            return rec.finish()
        self._fail_over_and_back(rec, stay)
        return rec.finish()

    @property
    def _rto_seconds(self) -> float:
        return self.plan.objectives.disaster_recovery.rto.total_seconds()

    def _check_endpoints(self) -> None:
        for region in (self.primary, self.secondary):
            if region not in self.target.regions:
                raise UserError(f"--endpoint: no endpoint for region {region} (write REGION=URL)")

    def _fail_over_and_back(self, rec: DrillRecorder, stay: bool) -> None:
        """Move DNS to the secondary, verify it serves (time to recovery), then move it back, unless
        ``stay``. Once DNS was touched, any failure runs the automatic fail-back."""
        dns = FailoverDns(self.route53, self.target.zone, self.target.record)
        touched = False
        recovery: float | None = None
        try:
            with rec.step("dns-failover", _CHANGES["dns-failover"]) as step:
                started = self.monotonic()
                touched = True  # from here on, a failure must put the primary back
                step.detail = self._switch_dns(dns, self.secondary)
                self._inject("dns-failover")
            with rec.step("verify-secondary-serves") as step:
                self._wait_serving(dns, self.secondary)
                recovery = self.monotonic() - started
                step.detail = f"{self.secondary} serves; time to recovery {recovery:.2f}s"
                self._inject("verify-secondary-serves")
            rec.objective("time to recovery (RTO)", self._rto_seconds, recovery)
            if stay:
                rec.notes.append(f"--stay: traffic stays on {self.secondary}; fail back with the runbook")
                touched = False  # asked for: the only way the drill ends with traffic moved
                return
            with rec.step("dns-failback", _CHANGES["dns-failback"]) as step:
                step.detail = self._switch_dns(dns, self.primary)
                self._inject("dns-failback")
            with rec.step("verify-primary-serves") as step:
                self._wait_serving(dns, self.primary)
                step.detail = f"{self.primary} serves again"
                self._inject("verify-primary-serves")
            touched = False
        except StepFailed:
            if recovery is None:
                rec.objective("time to recovery (RTO)", self._rto_seconds, None)
        finally:
            if touched:
                self._automatic_failback(rec, dns)

    def _switch_dns(self, dns: FailoverDns, region: str) -> str:
        """Make ``region``'s failover record PRIMARY (retried); returns the step's detail."""
        self._retry(lambda: dns.make_primary(region))
        return f"{dns.record} PRIMARY -> {region}"

    def _preflight(self, rec: DrillRecorder) -> None:
        """Readiness before anything moves; the first failed check (StepFailed) ends the drill."""
        with rec.step("preflight-secondary-ready") as step:
            step.detail = self._secondary_ready()
        with rec.step("preflight-regions-agree") as step:
            step.detail = self._regions_agree()
        with rec.step("preflight-backup-fresh") as step:
            step.detail = self._backup_fresh()
        with rec.step("preflight-dns-on-primary") as step:
            step.detail = self._dns_on_primary()

    def _secondary_ready(self) -> str:
        """The secondary's Deployments are Available with the primary's replica count (or, with no
        view of the primary, each fully available)."""
        try:
            primary = self.workloads.deployments(self.primary)
        except StepSkipped:
            primary = None  # no view of the primary: each Deployment must be fully available instead
        try:
            secondary = self.workloads.deployments(self.secondary)
        except StepSkipped as err:  # an unchecked secondary is not a ready one
            raise StepFailed(
                f"cannot check the secondary {self.secondary}: {err} (--kubeconfig {self.secondary}=PATH)"
            ) from err
        problems = capacity_problems(primary, secondary)
        if primary is None:
            problems += [
                f"{d.name}: {d.available_replicas}/{d.replicas} replicas available in the secondary"
                for d in secondary
                if d.available_replicas < d.replicas
            ]
        if problems:
            raise StepFailed("secondary not ready: " + "; ".join(problems))
        return f"{len(secondary)} Deployments Available in {self.secondary}" + (
            "" if primary is None else " with the primary's replica count"
        )

    def _regions_agree(self) -> str:
        """The secondary serves what the primary serves (weights, cohort rule, flags), so failing
        over keeps a split rollout where it is rather than jumping it back or forward."""
        served = {}
        for region in (self.primary, self.secondary):
            try:
                served[region] = self.live.served(region)
            except StepSkipped as err:  # an unchecked region is not a consistent one
                raise StepFailed(
                    f"cannot read what {region} serves: {err} (--kubeconfig {region}=PATH)"
                ) from err
        primary, secondary = served[self.primary], served[self.secondary]
        problems = rollout_differences(self.primary, primary, self.secondary, secondary)
        if problems:
            raise StepFailed(
                f"{self.secondary} does not serve what {self.primary} serves: " + "; ".join(problems)
            )
        assert primary.weights is not None and primary.flags is not None
        return (
            f"both regions serve {describe_weights(primary.weights)}, "
            f"{describe_cohort(primary.cohort_rule)}, {len(primary.flags)} flags alike"
        )

    def _backup_fresh(self) -> str:
        rpo = self.plan.objectives.disaster_recovery.rpo
        # pgBackRest's repository: the stanza is the service's name, as the backup CronJobs name it.
        repo = Repository(self.target.bucket, self.target.prefix, "", self.plan.service)
        backup = latest_backup(self.s3, repo)
        where = f"s3://{repo.bucket}/{repo.backup_prefix}"
        if backup is None:
            raise StepFailed(f"no pgBackRest backup in {where}")
        age = self.now() - backup.stopped_at
        if age > rpo:
            raise StepFailed(
                f"newest backup {backup.label} in {where} is {_hours(age.total_seconds())} old, "
                f"older than the RPO {_hours(rpo.total_seconds())}"
            )
        return f"{backup.label} in {where} is {_hours(age.total_seconds())} old"

    def _dns_on_primary(self) -> str:
        dns = FailoverDns(self.route53, self.target.zone, self.target.record)
        answer = dns.answer()
        if answer != self.primary:
            raise StepFailed(f"{dns.record} answers with {answer}, not the primary {self.primary}")
        problem = probe(self.http, self.target.regions[self.primary].probe_url, self.primary)
        if problem:
            raise StepFailed(f"primary does not serve: {problem}")
        return f"{dns.record} -> {answer}, serving"

    def _retry(self, action: Callable[[], None]) -> None:
        # Route 53 throttles and can race a concurrent change: a few bounded retries.
        for attempt in Retrying(
            stop=stop_after_attempt(5),
            wait=wait_fixed(self.bounds.probe_interval),
            reraise=True,
            retry=retry_if_exception_type(Exception),
        ):
            with attempt:
                action()

    def _wait_serving(self, dns: FailoverDns, region: str) -> None:
        """Poll (bounded) until DNS answers with ``region`` and that region's endpoint serves."""
        url = self.target.regions[region].probe_url
        last: list[str] = []

        def check() -> bool:
            answer = dns.answer()
            problem = None if answer == region else f"DNS answers with {answer}"
            problem = problem or probe(self.http, url, region)
            last[:] = [problem] if problem else []
            return problem is None

        retrying = Retrying(
            stop=stop_after_attempt(self.bounds.probe_attempts)
            | stop_after_delay(self.bounds.switch_deadline),
            wait=wait_fixed(self.bounds.probe_interval),
            retry=retry_if_result(lambda ok: ok is False),
        )
        try:
            retrying(check)
        except RetryError as err:
            raise StepFailed(
                f"{region} did not serve within {self.bounds.probe_attempts} probes: "
                f"{last[0] if last else '?'}"
            ) from err

    def _automatic_failback(self, rec: DrillRecorder, dns: FailoverDns) -> None:
        try:
            with rec.step("automatic-failback", _CHANGES["automatic-failback"]) as step:
                self._retry(lambda: dns.make_primary(self.primary))
                self._wait_serving(dns, self.primary)
                step.detail = f"{dns.record} back on {self.primary}, serving"
        except StepFailed:
            rec.notes.append(
                f"AUTOMATIC FAIL-BACK FAILED: traffic may still be on {self.secondary}; "
                "follow runbooks/region-failover.md, section dns-failback, by hand"
            )


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"
