"""Drift: live HTTPRoute weights read from a real local kube-apiserver, compared with git.

The route is rendered by the Pulumi program's own Gateway API router (infra/traffic), so the reader
follows what the program really writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops_fixtures import STACK_CONFIG, Remote

from infra.autoscaling import AutoscalingArgs, hpa_manifest
from infra.bluegreen import BlueGreenArgs, deployment_manifest
from infra.traffic.gateway_api import GatewayApiRouter
from infra.traffic.router import RouteSpec
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.kube_live import (
    KubeLiveState,
    deployment_replicas,
    hpa_replicas,
    route_weights,
)
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.gitops.seams import WorkloadsReading
from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour

SERVICE = "markethub-api"


def rendered_route(blue: int, green: int, namespace: str = "markethub") -> dict[str, object]:
    spec = RouteSpec(
        service=SERVICE,
        namespace=namespace,
        port=8080,
        weights={Colour.BLUE: blue, Colour.GREEN: green},
        candidate=Colour.GREEN,
        backends={Colour.BLUE: f"{SERVICE}-blue", Colour.GREEN: f"{SERVICE}-green"},
        cohort_header="x-markethub-cohort",
        cohort_value="beta",
    )
    (route,) = GatewayApiRouter().manifests(spec)
    return route


def test_weights_come_from_the_rule_without_the_cohort_header() -> None:
    assert route_weights(rendered_route(95, 5), SERVICE) == {Colour.BLUE: 95, Colour.GREEN: 5}


def test_a_route_naming_other_backends_gives_no_weights() -> None:
    assert route_weights(rendered_route(95, 5), "other-service") is None


def test_an_unreachable_cluster_is_unknown_not_in_sync(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.prod-us.yaml").write_text(STACK_CONFIG)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\nusers: [{name: x, user: {}}]\n"
    )
    live = KubeLiveState(tmp_path, SERVICE, kubeconfig=kubeconfig)
    assert live.live_weights("prod-us") is None


def rendered_workloads(plan: Plan, colour: Colour) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and HPA the Pulumi program renders for a colour, from the fixture's stack config."""
    state = state_from_text(STACK_CONFIG, "Pulumi.prod-us.yaml")
    deployment = deployment_manifest(
        BlueGreenArgs(SERVICE, "markethub", "img", stable=state.stable, candidate=state.candidate), colour
    )
    hpa = hpa_manifest(AutoscalingArgs(SERVICE, "markethub", state, plan.stage(state.stage)), colour)
    return deployment, hpa


def test_a_deployment_is_healthy_when_its_ready_replicas_reach_the_replicas_it_asks_for(plan: Plan) -> None:
    deployment, _ = rendered_workloads(plan, Colour.BLUE)
    deployment["spec"] = {**deployment["spec"], "replicas": 4}  # the autoscaler sets it, not the program
    assert deployment_replicas({**deployment, "status": {"readyReplicas": 3}}) == {
        "ready": 3,
        "desired": 4,
        "healthy": False,
    }
    assert deployment_replicas({**deployment, "status": {"readyReplicas": 4}})["healthy"] is True
    # a Deployment with no status yet has no ready replica
    assert deployment_replicas(deployment)["ready"] == 0


def test_an_hpa_reports_current_against_desired_inside_its_floor_and_ceiling(plan: Plan) -> None:
    _, hpa = rendered_workloads(plan, Colour.GREEN)
    status = {"currentReplicas": 2, "desiredReplicas": 3}
    assert hpa_replicas({**hpa, "status": status}) == {
        "current": 2,
        "desired": 3,
        "min": hpa["spec"]["minReplicas"],
        "max": hpa["spec"]["maxReplicas"],
        "healthy": False,
    }
    assert hpa_replicas({**hpa, "status": {**status, "currentReplicas": 3}})["healthy"] is True
    assert hpa_replicas(hpa)["healthy"] is False  # never scaled: nothing known to be running


def test_unreachable_cluster_leaves_workloads_unknown_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.prod-us.yaml").write_text(STACK_CONFIG)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod-us\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: prod-us, context: {cluster: x, user: x}}]\nusers: [{name: x, user: {}}]\n"
    )
    reading = KubeLiveState(tmp_path, SERVICE, kubeconfig=kubeconfig).workloads("prod-us")
    assert reading.health is None
    assert reading.why is not None
    assert reading.why.startswith(f"deployment markethub/{SERVICE}-blue: NewConnectionError: ")
    assert "Connection refused" in reading.why


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from devenv.cluster import KwokCluster

    started = KwokCluster("gitops-drift", tmp_path_factory.mktemp("kwok"), nodes=1)
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.mark.e2e
def test_status_reports_in_sync_then_drift_from_the_live_route(
    remote: Remote, plan: Plan, cluster: object
) -> None:
    from kubernetes import client

    clone = remote.clone("a")
    api = cluster.api_client()  # type: ignore[attr-defined]
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "markethub"}})
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "markethub", "httproutes", rendered_route(98, 2)
    )
    # The stack config pins `kubernetes:context: prod-us`: name the local cluster's context so.
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())  # type: ignore[attr-defined]
    kubeconfig["contexts"][0]["name"] = kubeconfig["current-context"] = "prod-us"
    (clone.parent / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    live = KubeLiveState(clone, SERVICE, kubeconfig=clone.parent / "kubeconfig")
    ops = GitOps(repo=GitRepo(clone), plan=plan)

    (synced,) = ops.status(["prod-us"], live)
    assert synced.drift == "in-sync"

    # Someone edits the route by hand: git still says 98/2.
    custom.replace_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        "markethub",
        "httproutes",
        SERVICE,
        {
            **rendered_route(50, 50),
            "metadata": {
                **rendered_route(50, 50)["metadata"],  # type: ignore[dict-item]
                "resourceVersion": custom.get_namespaced_custom_object(
                    "gateway.networking.k8s.io", "v1", "markethub", "httproutes", SERVICE
                )["metadata"]["resourceVersion"],
            },
        },
    )
    (drifted,) = ops.status(["prod-us"], live)
    assert drifted.drift == "drift"
    assert drifted.live == {"blue": 50, "green": 50}


@pytest.mark.e2e
def test_workloads_read_each_colours_deployment_and_hpa_from_the_cluster(
    plan: Plan, cluster: object, tmp_path: Path
) -> None:
    import time

    from kubernetes import client

    namespace = "health"
    (tmp_path / "Pulumi.prod-us.yaml").write_text(
        STACK_CONFIG.replace("config:\n", f"config:\n  markethub-rollout:namespace: {namespace}\n", 1)
    )
    api = cluster.api_client()  # type: ignore[attr-defined]
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    deployment, hpa = rendered_workloads(plan, Colour.BLUE)
    for manifest in (deployment, hpa):
        manifest["metadata"]["namespace"] = namespace
    deployment["spec"]["replicas"] = 2  # what the autoscaler would set
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, hpa)
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())  # type: ignore[attr-defined]
    kubeconfig["contexts"][0]["name"] = kubeconfig["current-context"] = "prod-us"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    live = KubeLiveState(tmp_path, SERVICE, kubeconfig=tmp_path / "kubeconfig")

    def ready(reading: WorkloadsReading) -> bool:
        return bool(reading.health and reading.health["blue"]["deployment"].get("healthy"))

    deadline = time.monotonic() + 15  # the controller manager scales it, kwok marks the pods ready
    reading = live.workloads("prod-us")
    while not ready(reading) and time.monotonic() < deadline:
        time.sleep(0.5)
        reading = live.workloads("prod-us")
    assert reading.why is None and reading.health is not None
    assert reading.health["blue"]["deployment"] == {"ready": 2, "desired": 2, "healthy": True}
    assert (reading.health["blue"]["hpa"]["min"], reading.health["blue"]["hpa"]["max"]) == (
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
    )
    # green was never deployed: unknown, and the answer says which resource and how
    assert reading.health["green"] == {
        "deployment": {"why": f"deployment {namespace}/{SERVICE}-green: HTTP 404 Not Found"},
        "hpa": {"why": f"hpa {namespace}/{SERVICE}-green: HTTP 404 Not Found"},
    }
