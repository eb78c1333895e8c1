"""The crash-rate and load-balancer triggers fire from what the declared controller is given, only that.

The controller's ``serve`` container is rendered by the Pulumi program (under the mocks of
``infra_helpers``) from the shipped ``Pulumi.local-us-east-1.yaml`` with the controller turned on and
its providers pointed at this lane's crash reporter and moto server, as a team points them at theirs
(``controller.providers``). Its environment is resolved as the kubelet would (``devenv.pod.LocalPod``):
values as rendered, Secret references filled from the Secrets a team creates. Here those hold moto's
test keys (the optional AWS keys; in production the pod's IRSA identity) and, for the SQL provider
that only gate alerts read, a DSN of a loopback port where nothing listens. ``rollout serve`` runs with
exactly that environment and none of this machine's ``ROLLOUT_*`` or ``AWS_*`` variables. Its command
line is the lane's (``--no-apply``, a local clone, a 1s collect interval):
``tests/e2e/test_controller_e2e.py`` runs the declared one, which needs the Pulumi CLI.

Real components: the simulator as the service (the crash reporter's stability API; the load balancer
publishing ``UnHealthyHostCount`` to CloudWatch on moto's server, AWS being out of reach), ``rollout
serve`` in its own process collecting and exporting at ``/metrics``, Debian's Prometheus scraping it
with the trigger rules ``infra/alerts.py`` generates, Debian's Alertmanager posting to serve. Trigger
windows are compressed 60x, as in ``tests/alerting/test_alerting_e2e.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from pulumi_render import deploy

from devenv.pod import LocalPod
from devenv.services import MotoServer
from infra.program import load_plan_file, resolve_plan_path
from infra.settings import read_settings, stack_file_config
from rollout_policies import envvars
from simulator.harness import FAULTS, AlertingLane, compressed, compressed_budget

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "Pulumi.local-us-east-1.yaml"
SERVICE = "markethub-mobile"
NOTHING_LISTENS = "postgresql://analytics@127.0.0.1:9/analytics"  # the discard port: connection refused
ALERTS = {"crash-rate": "RollbackCrashRate", "load-balancer-failures": "RollbackLoadBalancerFailures"}
METRICS = {"crash-rate": "crash_rate", "load-balancer-failures": "lb_unhealthy_hosts"}


def declared_serve_container(crash_reporter_url: str, cloudwatch_url: str) -> tuple[dict, dict]:
    """(pod spec, serve container) of the Deployment the program renders for the local stack."""
    raw = stack_file_config(STACK_FILE)
    raw["controller"] = json.dumps(
        {
            "repository": "file:///srv/markethub-rollout.git",
            "providers": {
                "jsonBaseUrls": {"crash_reporter": crash_reporter_url},
                "cloudwatchEndpointUrl": cloudwatch_url,
            },
        }
    )
    settings = read_settings(raw, stack="local-us-east-1")
    plan = load_plan_file(resolve_plan_path(settings.plan))
    deployed = deploy(settings, plan)
    spec = deployed.one("Deployment", f"{SERVICE}-rollout")["spec"]["template"]["spec"]
    (serve,) = [c for c in spec["containers"] if c["name"] == "serve"]
    return spec, serve


def declared_environment(lane: AlertingLane, volumes: Path) -> dict[str, str]:
    """The serve container's environment as the kubelet resolves it, Secrets as a team created them."""
    _, serve = declared_serve_container(lane.simulation.crash_reporter.url, lane.moto.endpoint_url)
    secrets = {
        ("rollout-webhook", "token"): lane.token,
        ("rollout-pulumi", "backend-url"): (volumes / "pulumi-state").as_uri(),
        ("rollout-providers", "sql-dsn"): NOTHING_LISTENS,
        ("rollout-providers", "aws-access-key-id"): MotoServer.credentials["aws_access_key_id"],
        ("rollout-providers", "aws-secret-access-key"): MotoServer.credentials["aws_secret_access_key"],
    }
    pod = LocalPod(
        f"{SERVICE}-rollout-local", "markethub", "127.0.0.1", volumes, lambda n, k: secrets.get((n, k))
    )
    return pod.environment(serve)


def _machine_env() -> dict[str, str]:
    """This machine's environment without anything that could configure a provider behind the test's back."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ROLLOUT_", "AWS_"))}


def test_the_declared_environment_names_the_lanes_sources_by_the_names_the_collector_reads() -> None:
    _, serve = declared_serve_container("http://127.0.0.1:1", "http://127.0.0.1:2")
    values = {item["name"]: item.get("value") for item in serve["env"]}
    assert values[envvars.JSON_BASE_URLS] == "crash_reporter=http://127.0.0.1:1"
    assert values[envvars.CLOUDWATCH_ENDPOINT_URL] == "http://127.0.0.1:2"
    assert values[envvars.CLOUDWATCH_REGION] == "us-east-1"


@pytest.mark.parametrize("trigger", list(ALERTS))
def test_the_trigger_fires_from_what_the_declared_controller_measures_and_exports(
    tmp_path: Path, trigger: str
) -> None:
    plan = load_plan_file(
        resolve_plan_path(read_settings(stack_file_config(STACK_FILE), stack="local-us-east-1").plan)
    )
    used: dict[str, str] = {}

    def controller_env(lane: AlertingLane) -> dict[str, str]:
        used.update(declared_environment(lane, tmp_path / "volumes"))
        return used

    with AlertingLane(
        tmp_path, compressed(plan, 60), seed=23, detection_budget=compressed_budget(60),
        missing_data_for="30s", serve_env=_machine_env(), controller_env=controller_env,
    ) as lane:  # fmt: skip
        lane.wait_for_traffic()
        metric = METRICS[trigger]
        series = f'markethub_rollout_measurement{{metric="{metric}",service="{SERVICE}"}}'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lane.query(series):
            time.sleep(0.5)
        found = lane.query(series)
        assert len(found) == 1, f"Prometheus has no {metric} from serve; /metrics: {lane.serve.metrics()}"
        (exported,) = found
        # Measured and exported by serve (its target), scraped by Prometheus; healthy before the fault.
        assert exported["metric"]["instance"] == lane.serve.target  # type: ignore[index]
        assert float(exported["value"][1]) == 0.0  # type: ignore[index]
        assert lane.remote.commits_since_seed() == []

        lane.simulation.inject("green", **FAULTS[trigger])
        commit = lane.wait_for_rollback(timeout=90)
        assert commit is not None, (
            f"no rollback; firing: {lane.firing()}; log: {lane.serve.log_path.read_text()}"
        )
        assert ALERTS[trigger] in lane.firing()
        (after,) = lane.query(series)
        assert float(after["value"][1]) > 0  # type: ignore[index]
        assert (
            f"Why: automatic rollback: {next(t.text for t in plan.triggers if t.id == trigger)}"
            in (lane.remote.messages()[0])
        )
    # The provider variables serve had are the Deployment's, and only those.
    assert used[envvars.JSON_BASE_URLS].startswith("crash_reporter=http://127.0.0.1:")
    assert used[envvars.AWS_ACCESS_KEY_ID] == MotoServer.credentials["aws_access_key_id"]
