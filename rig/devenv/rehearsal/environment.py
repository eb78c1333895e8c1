"""The rehearsal's running world: simulators, data sources, Prometheus, Alertmanager, the controller.

Everything is started here and stopped by pid when the rehearsal ends (also after a failure).
``secrets`` maps the names the shipped workflows use to this world's values, as a team would fill
its repository's secrets.
"""

from __future__ import annotations

import base64
import contextlib
import secrets as random_secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv.local import EnvInfo
from devenv.rehearsal.world import (
    Analytics,
    CloudWatchFeed,
    Reporters,
    Telemetry,
    fan_out,
    unhealthy_candidates,
)
from devenv.services import Alertmanager, PostgreSQL, Prometheus
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan

ANALYTICS_DB = "postgres"
NAMESPACE = "markethub"
CONTROLLER = "markethub-mobile-rollout"  # the controller's Deployment (infra/controller.py names)
# The analytics tables model a day of a real app's users: each simulated session stands for this
# many sessions (of distinct users), so a scaled day holds enough rows to judge a 2% step.
SESSION_WEIGHT = 20


class World:
    """Simulators, data sources, Prometheus (with the plan's trigger rules), Alertmanager, controller."""

    def __init__(
        self,
        info: EnvInfo,
        plan: Plan,
        options: Any,
        run_dir: Path,
        *,
        say: Callable[[str], None],
        backend_url: str | None = None,
    ) -> None:
        self.info, self.plan, self.options, self.run_dir, self.say = info, plan, options, run_dir, say
        self.backend_url = backend_url or info.pulumi_backend_url
        self._stack = contextlib.ExitStack()
        self.simulations: dict[str, Any] = {}
        self.telemetry: dict[str, Telemetry] = {}
        self.analytics: dict[str, Analytics] = {}
        self.webhook_token = random_secrets.token_urlsafe(24)
        self._stop = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, stacks: dict[str, str]) -> None:
        from simulator.simulation import Simulation
        from simulator.traffic import HTTPRouteWeights

        self.stacks = stacks
        day = 86400 / self.options.scales.calendar
        self.postgres = PostgreSQL(self.run_dir / "postgres").start()
        self._stack.callback(self.postgres.stop)
        self.reporters = Reporters(window_scale=self.options.scales.response, seed=7).start()
        self.reporters.silent.update(self.options.silent_sources)
        self._stack.callback(self.reporters.stop)
        cohort = frozenset(range(self.options.cohort_size))
        for index, region in enumerate(stacks.values()):
            telemetry = Telemetry(region, seed=index)
            self._stack.callback(telemetry.stop)
            analytics = Analytics(
                self.postgres.dsn_for(ANALYTICS_DB), region, day, seed=index, weight=SESSION_WEIGHT
            )
            analytics.start()
            self._stack.callback(analytics.stop)
            weights = HTTPRouteWeights(str(self.info.kubeconfig(region)), "markethub")
            simulation = Simulation(
                weights,
                sessions_per_second=self.options.sessions_per_second,
                seed=100 + index,
                population=self.options.population,
                cohort=cohort,
                cohort_share=0.2,
                observer=fan_out(telemetry.observe, analytics.observe, self.reporters.observe),
            )
            simulation.start()
            self._stack.callback(simulation.stop)
            self.simulations[region], self.telemetry[region], self.analytics[region] = (
                simulation,
                telemetry,
                analytics,
            )
        import boto3

        cloudwatch = boto3.client(
            "cloudwatch",
            endpoint_url=self.info.moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        balancers = [s.load_balancer for s in self.simulations.values()]
        self.cloudwatch = CloudWatchFeed(cloudwatch, lambda: unhealthy_candidates(balancers)).start()
        self._stack.callback(self.cloudwatch.stop)
        # The gates' Prometheus (the promote workflow's ROLLOUT_PROMETHEUS_URL): both regions' series.
        # Each region's rules run in that region's own Prometheus (start_alerting), as in production.
        self.prometheus = Prometheus(
            self.run_dir / "prometheus",
            [target for region in stacks.values() for target in self.region_targets(region)],
            scrape_interval="1s",
            evaluation_interval="1s",
        ).start()
        self.prometheus_url = self.prometheus.url
        self._stack.callback(self.prometheus.stop)
        self.say(
            f"world: {len(self.simulations)} regions, {self.options.sessions_per_second:g} sessions/s each; "
            f"prometheus {self.prometheus.url}; postgres {self.postgres.port}; reporters {self.reporters.url}"
        )

    def region_targets(self, region: str) -> list[str]:
        return [*self.simulations[region].targets, self.telemetry[region].target]

    # -- what a team creates in each cluster before the first deploy (docs/deploy.md) -----------------
    def controller_settings(self, remote: Path, forge_repository: str, forge_url: str) -> str:
        """The stack config's controller block, as a team writes it, pointed at this world's sources.

        The simulator's load balancers publish their health in one CloudWatch region (us-east-1, as
        the feed the gates read), so both regions' controllers read it there."""
        urls = ", ".join(f"{name}: '{url}'" for name, url in sorted(self.reporters.base_urls.items()))
        return (
            "  markethub-rollout:controller:\n"
            f"    repository: {remote.as_uri()}\n"
            "    image: ghcr.io/markethub/markethub-rollout:rehearsal\n"
            "    providers:\n"
            f"      jsonBaseUrls: {{{urls}}}\n"
            f"      cloudwatchEndpointUrl: '{self.info.moto_url}'\n"
            "      cloudwatchRegion: us-east-1\n"
            # The repository is a bare remote on disk; its pull requests are on the GitHub stand-in,
            # named as a GitHub Enterprise Server's would be.
            f"    forgeRepository: {forge_repository}\n"
            f"    forgeUrl: '{forge_url}'\n"
        )

    def create_cluster_secrets(self, backend_url: str, forge_token: str) -> None:
        """The namespace and the Secrets docs/deploy.md tells a team to create in each cluster.

        A broken apply (a test of the failure report) is a Pulumi passphrase in the Secret that does not
        open the stacks' secrets: the controller's `pulumi up` then fails as it would in production."""
        from kubernetes import client, config

        passphrase = "not-the-passphrase" if self.options.break_apply else self.info.pulumi_passphrase
        values = {
            "rollout-webhook": {"token": self.webhook_token},
            "rollout-pulumi": {"backend-url": backend_url, "config-passphrase": passphrase},
            "rollout-providers": {
                "sql-dsn": self.postgres.dsn_for(ANALYTICS_DB),
                "aws-access-key-id": "testing",
                "aws-secret-access-key": "testing",
            },
            "rollout-notify": {"slack-webhook-url": f"{self.reporters.url}/slack"},
            "rollout-forge": {"token": forge_token},
        }
        for region in self.stacks.values():
            api = client.CoreV1Api(config.new_client_from_config(str(self.info.kubeconfig(region))))
            api.create_namespace({"metadata": {"name": NAMESPACE}})
            for name, data in values.items():
                body = {"metadata": {"name": name, "namespace": NAMESPACE}, "stringData": data}
                api.create_namespaced_secret(NAMESPACE, body)

    # -- each region's controller, Alertmanager and rule-running Prometheus ------------------------------
    def start_alerting(self) -> None:
        """Per region, after the first deploy, what the Pulumi program declared there: the controller's
        Deployment run as declared (``devenv.pod.run_deployment``), an Alertmanager configured from the
        live AlertmanagerConfig (``devenv.operator_config.translate``, as the prometheus-operator does),
        and a Prometheus that scrapes the region (its ServiceMonitor'd controller too) and runs the
        region's PrometheusRules. Only the rule interval changes: 1s here (the report gives the margin
        at production's 30s)."""
        import yaml

        self.controllers: dict[str, Any] = {}
        self.alerting_prometheus: dict[str, Prometheus] = {}
        self.rule_files: list[Path] = []
        for stack, region in self.stacks.items():
            pod = self._run_controller(region)
            alertmanager = Alertmanager(
                self.run_dir / f"alertmanager-{region}",
                yaml.safe_dump(self._alertmanager_config(region, pod)),
            )
            alertmanager.start()
            self._stack.callback(alertmanager.stop)
            files = self._rule_files(stack, region)
            prometheus = Prometheus(
                self.run_dir / f"prometheus-{region}",
                [*self.region_targets(region), f"{pod.pod_ip}:{pod.ports['http']}"],
                files,
                alertmanager.url,
                scrape_interval="1s",
                evaluation_interval="1s",
            ).start()
            self._stack.callback(prometheus.stop)
            self.alerting_prometheus[region] = prometheus
            self.rule_files += files
            self.say(
                f"alerting {region}: controller {pod.url()} (from its Deployment), alertmanager "
                f"{alertmanager.url}, prometheus {prometheus.url} with {len(files)} rule file(s)"
            )

    def _run_controller(self, region: str) -> Any:
        from devenv.pod import PodError, run_deployment

        kubeconfig = self.info.kubeconfig(region)
        try:
            pod = run_deployment(
                kubeconfig, NAMESPACE, CONTROLLER, "serve", self.run_dir / f"controller-{region}"
            )
        except PodError as err:
            raise UserError(f"the controller in {region}: {err}") from None
        self.controllers[region] = pod
        self._stack.callback(pod.stop)
        return pod

    def _alertmanager_config(self, region: str, pod: Any) -> dict[str, Any]:
        """The live AlertmanagerConfig, translated; the controller Service's cluster address resolved to
        its pod (what cluster DNS and the Service's port mapping do)."""
        from urllib.parse import urlsplit

        from kubernetes import client, config

        from devenv.operator_config import translate
        from devenv.pod import secret_reader

        api_client = config.new_client_from_config(str(self.info.kubeconfig(region)))
        manifest = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "monitoring.coreos.com",
            "v1alpha1",
            NAMESPACE,
            "alertmanagerconfigs",
            f"{self.plan.service}-rollout",
        )
        read = secret_reader(self.info.kubeconfig(region), NAMESPACE)

        def secret(name: str, key: str) -> str:
            value = read(name, key)
            if value is None:
                raise UserError(f"{region}: Secret {NAMESPACE}/{name} has no key {key!r}")
            return value

        translated = translate(manifest, secret)
        services = client.CoreV1Api(api_client)
        for receiver in translated["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                url = urlsplit(hook["url"])
                name, _, rest = (url.hostname or "").partition(".")
                if not rest.startswith(f"{NAMESPACE}.svc"):
                    continue
                service = services.read_namespaced_service(name, NAMESPACE)
                (port,) = [p for p in service.spec.ports if p.port == (url.port or 80)]
                target = (
                    port.target_port if isinstance(port.target_port, int) else pod.ports[port.target_port]
                )
                hook["url"] = url._replace(netloc=f"{pod.pod_ip}:{target}").geturl()
        return translated

    def _rule_files(self, stack: str, region: str) -> list[Path]:
        """The region's PrometheusRules, read from its API server, as Prometheus rule files."""
        import json

        from kubernetes import client, config

        api = client.CustomObjectsApi(config.new_client_from_config(str(self.info.kubeconfig(region))))
        listed = api.list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", NAMESPACE, "prometheusrules"
        )
        files: list[Path] = []
        for item in listed.get("items", []):
            groups = [{**group, "interval": "1s"} for group in item.get("spec", {}).get("groups", [])]
            path = self.run_dir / f"rules-{stack}-{item['metadata']['name']}.json"
            path.write_text(json.dumps({"groups": groups}, indent=1) + "\n")
            files.append(path)
        if not files:
            raise UserError(f"no PrometheusRule in namespace {NAMESPACE} of {region} after `pulumi up`")
        return files

    def stop(self) -> None:
        self._stop.set()
        self._stack.close()

    # -- what the workflows' secrets are here ----------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        return self.secrets_base()

    def secrets_base(self) -> dict[str, str]:
        json_urls = ",".join(f"{name}={url}" for name, url in self.reporters.base_urls.items())
        values = {
            "PROMETHEUS_URL": self.prometheus_url,
            "ROLLOUT_PROMETHEUS_URL": self.prometheus_url,
            "ROLLOUT_SQL_DSN": self.postgres.dsn_for(ANALYTICS_DB),
            "ROLLOUT_JSON_BASE_URLS": json_urls,
            "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": self.info.moto_url,
            "ROLLOUT_CLOUDWATCH_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.info.pulumi_passphrase,
            "SLACK_WEBHOOK_URL": "",
            "PAGERDUTY_ROUTING_KEY": "",
            "ROLLOUT_WEBHOOK_TOKEN": self.webhook_token,
            # The up workflow writes a kubeconfig from this secret; each rehearsed stack also names
            # its own region's cluster in its config (kubernetes:kubeconfig), which the provider uses.
            "KUBECONFIG_DATA": base64.b64encode(
                Path(self.info.kubeconfig(next(iter(self.stacks.values())))).read_bytes()
            ).decode(),
        }
        return values

    def variables(self) -> dict[str, str]:
        # The replica repository deploys its local stacks, as a team sets the repository variable
        # (docs/deploy.md, "Which stacks CI deploys"); production CI leaves it unset.
        return {**self.secrets(), "ROLLOUT_ENVIRONMENT": "local"}

    # -- watching ------------------------------------------------------------------------------------
    def watch_weights(
        self, stacks: dict[str, str], repo: Any, record: Any, clock: Callable[[], float]
    ) -> None:
        """Sample each region's live weights (and git's) about once a second, for the report."""
        from devenv.rehearsal.live import live_view

        def loop() -> None:
            while not self._stop.wait(1.0):
                for stack, region in stacks.items():
                    with contextlib.suppress(Exception):
                        live = live_view(self.info.kubeconfig(region), "markethub", self.plan.service)
                        state = repo.state(stack)
                        record.weights.append(
                            {
                                "t": round(clock(), 2),
                                "stack": stack,
                                "region": region,
                                "live": (live["weights"] or {}).get(state.candidate.colour.value),
                                "git": state.candidate_weight,
                                "stage": state.stage,
                                "step": state.step,
                                "cohort": live["cohort_rule"],
                            }
                        )

        thread = threading.Thread(target=loop, name="weights", daemon=True)
        thread.start()
        self._stack.callback(lambda: thread.join(timeout=5))

    def tick(self, rehearsal: Any) -> None:
        """Start the fault driver: its own thread, every half second, so detection and rollback times
        are measured while the scheduled promotions and the up workflow run."""
        if getattr(self, "faults", None) is not None:
            return
        self.faults = FaultDriver(self, self.options.faults, self.options.scales, self.stacks)
        rehearsal.record.faults = self.faults.records

        def loop() -> None:
            while not self._stop.wait(0.5):
                try:
                    self.faults.tick(rehearsal)
                except Exception as err:  # a read racing a push: try again next time, say so once
                    note = f"fault driver: {type(err).__name__}: {str(err)[:200]}"
                    if note not in self.fault_notes:
                        self.fault_notes.append(note)

        self.fault_notes: list[str] = []
        thread = threading.Thread(target=loop, name="faults", daemon=True)
        thread.start()
        self._stack.callback(lambda: thread.join(timeout=10))


class FaultDriver:
    """Injects each fault when its stage (and step) has run for its offset, then follows the response.

    A rollback fault is injected into the candidate (green) of its regions; it is detected when its
    trigger's alert fires in Prometheus, answered when the controller's rollback commit is on main,
    and over when the region's live weights send nothing to the candidate (the cohort rule gone in
    beta). Then the fault is cleared (the fix), the on-call engineer runs ``rollout retry`` for the
    rolled-back stacks, and the stage starts again.
    """

    def __init__(self, world: World, faults: tuple[Any, ...], scales: Any, stacks: dict[str, str]) -> None:
        from devenv.rehearsal.faults import FaultRecord

        self.world, self.scales, self.stacks = world, scales, stacks
        regions = list(stacks.values())
        self.records = [FaultRecord(fault, fault.region or ",".join(regions)) for fault in faults]
        self.head_at_injection: dict[int, str] = {}

    def window(self, fault: Any) -> float | None:
        from infra.settings import Alerts
        from rollout_policies.plan.model import parse_duration

        if fault.trigger is None:
            return None
        trigger = next(t for t in self.world.plan.triggers if t.id == fault.trigger)
        budget = parse_duration(Alerts().detection_budget).total_seconds()
        # A window of 0s ("immediately") allows the detection budget: the rule, scrape, webhook, apply.
        return max(trigger.window.total_seconds(), budget) / self.scales.response

    def stacks_of(self, record: Any) -> list[str]:
        regions = record.region.split(",")
        return [stack for stack, region in self.stacks.items() if region in regions]

    def tick(self, rehearsal: Any) -> None:
        for record in self.records:
            if record.cleared_at is not None:
                continue
            if record.injected_at is None:
                self._maybe_inject(rehearsal, record)
            else:
                self._follow(rehearsal, record)

    def _maybe_inject(self, rehearsal: Any, record: Any) -> None:
        from datetime import UTC, datetime

        fault = record.fault
        stack = self.stacks_of(record)[0]
        state = rehearsal.repo.state(stack)
        if state.stage != fault.stage or (fault.step is not None and state.step != fault.step):
            return
        if fault.stage != "beta" and state.candidate_weight == 0:
            return  # rolled back: wait for the resume
        stage = self.world.plan.stage(fault.stage)
        length = stage.steps[fault.step].bake if fault.step is not None else stage.min_duration
        began = state.step_started_at if fault.step is not None else state.stage_started_at
        due = began + fault.delay(length) / self.scales.calendar
        if datetime.now(UTC) < due:
            return
        regions = record.region.split(",")
        if fault.response == "rollback":
            for region in regions:
                self.world.simulations[region].inject("green", **fault.injection)
        elif fault.kind == "silent-source":
            self.world.reporters.silent.add("crash_reporter")
        record.window_seconds = self.window(fault)
        record.injected_at = rehearsal.elapsed()
        self.head_at_injection[id(record)] = rehearsal.repo.head()
        rehearsal.event("fault", stack, f"injected {fault.label()} (window {record.window_seconds or '-'} s)")

    def _follow(self, rehearsal: Any, record: Any) -> None:
        fault = record.fault
        if fault.response == "rollback":
            if record.detected_at is None and fault.trigger and self._firing(fault.trigger):
                record.detected_at = rehearsal.elapsed()
                rehearsal.event("detected", "", f"{fault.trigger} alert firing")
            if record.responded_at is None:
                commit = self._rollback_commit(rehearsal, record)
                if commit:
                    record.responded_at, record.commit = rehearsal.elapsed(), commit
                    rehearsal.event(
                        "rollback", "", f"controller committed the rollback {commit[:8]}", commit=commit
                    )
            if (
                record.stable_at is None
                and record.responded_at is not None
                and self._stable(rehearsal, record)
            ):
                record.stable_at = rehearsal.elapsed()
                took = record.stable_at - record.injected_at
                record.ok = record.window_seconds is not None and took <= record.window_seconds
                record.detail = (
                    f"stable weights live {took:.1f}s after the fault (window {record.window_seconds:.1f}s)"
                )
                rehearsal.event("stable", "", record.detail)
                for region in record.region.split(","):
                    self.world.simulations[region].clear("green")
                record.cleared_at = rehearsal.elapsed()
                if not record.ok:
                    rehearsal.record.failures.append(f"{fault.label()}: {record.detail}")
                rehearsal.retry_after_fix(self.stacks_of(record), f"{fault.label()}: fixed")
            elif record.stable_at is None and record.window_seconds is not None:
                if rehearsal.elapsed() - record.injected_at > 3 * record.window_seconds + 30:
                    record.ok = False
                    record.detail = (
                        "no rollback after three windows"
                        if record.responded_at is None
                        else "rolled back in git, but the live objects never all left the candidate"
                        " (weights and cohort rule) within three windows"
                    )
                    rehearsal.record.failures.append(f"{fault.label()}: {record.detail}")
                    for region in record.region.split(","):
                        self.world.simulations[region].clear("green")
                    record.cleared_at = rehearsal.elapsed()
        elif fault.kind == "silent-source":
            # The plan's answer to missing data is a hold: the stage must not move while it lasts.
            held = rehearsal.elapsed() - record.injected_at
            moved = rehearsal.repo.head() != self.head_at_injection[id(record)] and any(
                rehearsal.repo.state(s).stage != fault.stage for s in self.stacks_of(record)
            )
            if moved:
                record.ok, record.detail = False, "the stage moved on while the crash reporter was silent"
            if held > 3 * rehearsal.options.interval + 10 or moved:
                record.ok = record.ok if record.ok is not None else True
                record.detail = record.detail or f"held {held:.0f}s while the crash reporter answered nothing"
                record.detected_at = record.responded_at = record.injected_at
                self.world.reporters.silent.discard("crash_reporter")
                record.cleared_at = rehearsal.elapsed()
                rehearsal.event("cleared", "", f"{fault.label()}: {record.detail}")
                if not record.ok:
                    rehearsal.record.failures.append(f"{fault.label()}: {record.detail}")

    def _firing(self, trigger: str) -> bool:
        import httpx

        names: list[str] = []
        for prometheus in self.world.alerting_prometheus.values():
            try:
                body = httpx.get(
                    f"{prometheus.url}/api/v1/query",
                    params={"query": 'ALERTS{alertstate="firing"}'},
                    timeout=3,
                ).json()
            except (httpx.HTTPError, ValueError):
                continue
            names += [str(r["metric"].get("alertname", "")) for r in body.get("data", {}).get("result", [])]
        wanted = trigger.replace("-", "").lower()
        return any(wanted in name.replace("-", "").replace("_", "").lower() for name in names)

    def _rollback_commit(self, rehearsal: Any, record: Any) -> str:
        start = self.head_at_injection[id(record)]
        for commit, _author, subject, _when in rehearsal.repo.commits(start, rehearsal.repo.head()):
            if "roll" in subject.lower() and "back" in subject.lower():
                return commit
        return ""

    def _stable(self, rehearsal: Any, record: Any) -> bool:
        from devenv.rehearsal.live import live_view

        for stack in self.stacks_of(record):
            region = self.stacks[stack]
            live = live_view(self.world.info.kubeconfig(region), "markethub", self.world.plan.service)
            if (live["weights"] or {}).get("green", 100) != 0 or live["cohort_rule"]:
                return False
        return True
