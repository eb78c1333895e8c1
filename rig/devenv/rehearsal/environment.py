"""The rehearsal's running world: simulators per region, the data sources, Prometheus, Alertmanager, the controller.

Everything is started here and stopped by pid when the rehearsal ends (also after a failure).
``secrets`` maps the names the shipped workflows use to this world's values, as a team would fill
its repository's secrets.
"""

from __future__ import annotations

import contextlib
import secrets as random_secrets
import threading
import time
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

from rollout_policies.plan.model import Plan

ANALYTICS_DB = "postgres"
# The analytics tables model a day of a real app's users: each simulated session stands for this
# many sessions (of distinct users), so a scaled day holds enough rows to judge a 2% step.
SESSION_WEIGHT = 20


class World:
    """Simulators, data sources, Prometheus (with the plan's trigger rules), Alertmanager, controller."""

    def __init__(
        self, info: EnvInfo, plan: Plan, options: Any, run_dir: Path, *, say: Callable[[str], None]
    ) -> None:
        self.info, self.plan, self.options, self.run_dir, self.say = info, plan, options, run_dir, say
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
                simulation, telemetry, analytics,
            )  # fmt: skip
        import boto3

        cloudwatch = boto3.client(
            "cloudwatch", endpoint_url=self.info.moto_url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        balancers = [s.load_balancer for s in self.simulations.values()]
        self.cloudwatch = CloudWatchFeed(cloudwatch, lambda: unhealthy_candidates(balancers)).start()
        self._stack.callback(self.cloudwatch.stop)
        targets = [t for s in self.simulations.values() for t in s.targets]
        targets += [t.target for t in self.telemetry.values()]
        self.rule_files = self.write_rules(stacks)
        self.alertmanager = self.start_alerting()
        self.prometheus = Prometheus(
            self.run_dir / "prometheus", targets, self.rule_files,
            self.alertmanager.url if self.alertmanager else None,
            scrape_interval="1s", evaluation_interval="1s",
        ).start()  # fmt: skip
        self._stack.callback(self.prometheus.stop)
        self.say(
            f"world: {len(self.simulations)} regions, {self.options.sessions_per_second:g} sessions/s each; "
            f"prometheus {self.prometheus.url}; postgres {self.postgres.port}; reporters {self.reporters.url}"
        )

    def write_rules(self, stacks: dict[str, str]) -> list[Path]:
        """The plan's trigger rules as the product generates them (and, until the controller exports
        the provider measurements itself, the simulator's bridge for crash rate and load balancer)."""
        from simulator.bridge import write_bridge_rules

        from rollout_policies.alerting.rules import write_trigger_rules

        budget = _scaled_budget(self.options.scales.response)
        return [
            write_trigger_rules(self.run_dir / "triggers.rules.json", self.plan, stacks, interval="1s",
                                detection_budget=budget),
            write_bridge_rules(self.run_dir / "bridge.rules.json", self.plan.service, interval="1s"),
        ]  # fmt: skip

    def start_alerting(self) -> Alertmanager | None:
        return None  # the controller and Alertmanager join with the faults

    def stop(self) -> None:
        self._stop.set()
        self._stack.close()

    # -- what the workflows' secrets are here ----------------------------------------------------------
    def secrets(self) -> dict[str, str]:
        json_urls = ",".join(f"{name}={url}" for name, url in self.reporters.base_urls.items())
        values = {
            "PROMETHEUS_URL": self.prometheus.url,
            "ROLLOUT_PROMETHEUS_URL": self.prometheus.url,
            "ROLLOUT_SQL_DSN": self.postgres.dsn_for(ANALYTICS_DB),
            "ROLLOUT_JSON_BASE_URLS": json_urls,
            "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": self.info.moto_url,
            "ROLLOUT_CLOUDWATCH_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "PULUMI_BACKEND_URL": self.info.pulumi_backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.info.pulumi_passphrase,
            "SLACK_WEBHOOK_URL": "",
            "PAGERDUTY_ROUTING_KEY": "",
            "ROLLOUT_WEBHOOK_TOKEN": self.webhook_token,
        }
        return values

    def variables(self) -> dict[str, str]:
        return dict(self.secrets())

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
        """Faults due now (see faults.py); nothing when none were asked for."""


def _scaled_budget(response: float) -> str:
    from infra.settings import Alerts

    from rollout_policies.plan.model import parse_duration

    seconds = parse_duration(Alerts().detection_budget).total_seconds() / response
    return f"{seconds:g}s"


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False
