"""Drift: live HTTPRoute weights read from a real local kube-apiserver, compared with git.

The route is rendered by the Pulumi program's own Gateway API router (infra/traffic), so the reader
follows what the program really writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gitops_fixtures import STACK_CONFIG, Remote

from infra.traffic.gateway_api import GatewayApiRouter
from infra.traffic.router import RouteSpec
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.kube_live import KubeLiveState, route_weights
from rollout_policies.gitops.repo import GitRepo
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
