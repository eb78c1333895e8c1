"""End to end on the local environment: a database loss in green rolls back through the real alerting path
and the HTTPRoute on the API server returns to blue.

Real components: kube-apiserver with kwok nodes (the local environment), the Pulumi CLI and Kubernetes
provider (``rollout serve --apply --applier pulumi``), Debian's Prometheus and Alertmanager, git.
The rollout repository is this project's HEAD pushed to a bare remote, with the shipped
``local-us-east-1`` stack moved to the limited stage's first step (green 2%) and deployed. The
simulator's users follow the live HTTPRoute weights. Trigger windows compressed 60x (this test uses
the immediate one, database connection loss).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.local import EnvInfo
from rollout_policies.plan.model import Plan
from simulator.harness import AlertingLane, GitRemote, LocalDeployment, compressed, compressed_budget
from simulator.traffic import HTTPRouteWeights

pytestmark = [pytest.mark.e2e, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
STACK, REGION = "local-us-east-1", "us-east-1"
SERVICE, NAMESPACE = "markethub-mobile", "markethub"


@pytest.fixture(scope="module")
def deployed(local_env_info: EnvInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    """The stack deployed at limited step 0 (green 2%) from a bare remote holding this project."""
    deployment = LocalDeployment(
        local_env_info, tmp_path_factory.mktemp("alerting-repo"), ROOT, STACK, REGION
    )
    yield deployment
    deployment.destroy()


def test_database_loss_in_green_rolls_back_and_the_route_on_the_api_server_returns_to_blue(
    deployed: LocalDeployment, plan: Plan, tmp_path: Path
) -> None:
    assert deployed.live() == {"blue": 98.0, "green": 2.0}
    weights = HTTPRouteWeights(str(deployed.kubeconfig), NAMESPACE, SERVICE)
    with AlertingLane(
        tmp_path, compressed(plan, 60), weights=weights, sessions_per_second=25,
        remote=GitRemote.existing(deployed.remote), stack=STACK, region=REGION,
        serve_apply=("--apply", "--applier", "pulumi"), serve_env=deployed.env,
        detection_budget=compressed_budget(60),
    ) as lane:  # fmt: skip
        lane.wait_for_traffic(timeout=60)
        lane.simulation.inject("green", db_down=True)
        commit = lane.wait_for_rollback(timeout=120)
        assert commit is not None, lane.serve.log_path.read_text()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and deployed.live() != {"blue": 100.0, "green": 0.0}:
            time.sleep(1)
        assert deployed.live() == {"blue": 100.0, "green": 0.0}, lane.serve.log_path.read_text()
        assert lane.remote.commits_since_seed() == [commit]
        time.sleep(2 * weights.refresh_seconds)
        assert weights.weights() == {"blue": 100.0, "green": 0.0}  # the users follow the route
