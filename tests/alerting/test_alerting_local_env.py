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

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from pulumi import automation as auto

from rollout_policies.env.local import EnvInfo
from rollout_policies.gitops.seams import AutomationApplier
from rollout_policies.gitops.stack_config import read_state
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour
from simulator.harness import AlertingLane, GitRemote, compressed
from simulator.traffic import HTTPRouteWeights

pytestmark = [pytest.mark.e2e, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
STACK, REGION = "local-us-east-1", "us-east-1"
SERVICE, NAMESPACE = "markethub-mobile", "markethub"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def live_weights(info: EnvInfo) -> dict[str, float]:
    api = client.CustomObjectsApi(config.new_client_from_config(str(info.kubeconfig(REGION))))
    route = api.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE
    )
    for rule in route["spec"]["rules"]:
        if not any(match.get("headers") for match in rule.get("matches", [])):
            return {
                ref["name"].rsplit("-", 1)[-1]: float(ref.get("weight", 1)) for ref in rule["backendRefs"]
            }
    return {}


@pytest.fixture(scope="module")
def deployed(
    local_env_info: EnvInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """The stack deployed at limited step 0 (green 2%) from a bare remote holding this project."""
    base = tmp_path_factory.mktemp("alerting-repo")
    remote, work = base / "remote.git", base / "work"
    git(base, "init", "-q", "--bare", "-b", "main", str(remote))
    git(ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    git(base, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "e2e@markethub.local")
    git(work, "config", "user.name", "e2e")
    path = work / f"Pulumi.{STACK}.yaml"
    text = path.read_text() + f"  kubernetes:kubeconfig: {local_env_info.kubeconfig(REGION)}\n"
    for old, new in (("stage: beta", "stage: limited"), ("blue: 100", "blue: 98"), ("green: 0", "green: 2")):
        text = text.replace(f"    {old}\n", f"    {new}\n").replace(f"      {old}\n", f"      {new}\n")
    path.write_text(text)
    assert read_state(path).weights == {Colour.BLUE: 98, Colour.GREEN: 2}
    env = {**os.environ, **local_env_info.pulumi_env(), **local_env_info.aws_env(REGION)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    applier = AutomationApplier(work, lambda stack: dict(env))
    applier.stack(STACK)  # `pulumi stack init` writes the stack's encryption salt into its config
    git(work, "commit", "-qam", "local-us-east-1 at limited step 0 on this environment's cluster")
    git(work, "push", "-q", "origin", "main")
    applier.stack(STACK).up(color="never")
    yield remote, work, env
    with contextlib.suppress(auto.CommandError):
        applier.stack(STACK).destroy(color="never")


def test_database_loss_in_green_rolls_back_and_the_route_on_the_api_server_returns_to_blue(
    deployed: tuple[Path, Path, dict[str, str]], local_env_info: EnvInfo, plan: Plan, tmp_path: Path
) -> None:
    remote, _, env = deployed
    assert live_weights(local_env_info) == {"blue": 98.0, "green": 2.0}
    weights = HTTPRouteWeights(str(local_env_info.kubeconfig(REGION)), NAMESPACE, SERVICE)
    with AlertingLane(
        tmp_path, compressed(plan, 60), weights=weights, sessions_per_second=25,
        remote=GitRemote.existing(remote), stack=STACK, region=REGION,
        serve_apply=("--apply", "--applier", "pulumi"), serve_env=env,
    ) as lane:  # fmt: skip
        lane.wait_for_traffic(timeout=60)
        lane.simulation.inject("green", db_down=True)
        commit = lane.wait_for_rollback(timeout=120)
        assert commit is not None, lane.serve.log_path.read_text()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and live_weights(local_env_info) != {"blue": 100.0, "green": 0.0}:
            time.sleep(1)
        assert live_weights(local_env_info) == {"blue": 100.0, "green": 0.0}, lane.serve.log_path.read_text()
        assert lane.remote.commits_since_seed() == [commit]
        time.sleep(2 * weights.refresh_seconds)
        assert weights.weights() == {"blue": 100.0, "green": 0.0}  # the users follow the route
