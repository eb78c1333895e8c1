"""The real `pulumi up` of a minimal stack against a local control plane, then preview, then destroy.

The Pulumi CLI and the Kubernetes provider are the real binaries from the tools cache; the Python
program runs in this process through the Automation API (the Go module proxy serves no Python language
host). Offline: automatic plugin acquisition is off and the provider is found on PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
from kubernetes import client, config

from devenv.local import LocalEnvironment
from devenv.pulumi_runner import (
    PulumiRunError,
    PulumiTarget,
    destroy,
    preview_changes,
    select_stack,
    up,
)
from devenv.tools import tool

pytestmark = pytest.mark.e2e

PROJECT = "markethub-env-e2e"


def web_stack(
    namespace: str, *, node_selector: dict[str, str] | None = None, create_timeout: str | None = None
) -> Callable[[], None]:
    """A namespace with a Deployment (2 replicas), a Service in front of it and an HTTPRoute to it."""

    def program() -> None:
        labels = {"app": "web"}
        ns = k8s.core.v1.Namespace("ns", metadata={"name": namespace})
        in_ns = pulumi.ResourceOptions(depends_on=[ns])
        deployment = k8s.apps.v1.Deployment(
            "web",
            metadata={"name": "web", "namespace": namespace},
            spec={
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": node_selector,
                        "containers": [
                            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(
                depends_on=[ns],
                custom_timeouts=pulumi.CustomTimeouts(create=create_timeout) if create_timeout else None,
            ),
        )
        service = k8s.core.v1.Service(
            "web",
            metadata={"name": "web", "namespace": namespace},
            spec={"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
            opts=pulumi.ResourceOptions(depends_on=[deployment]),
        )
        k8s.apiextensions.CustomResource(
            "web-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata={"name": "web", "namespace": namespace},
            spec={
                "parentRefs": [{"name": "edge"}],
                "rules": [{"backendRefs": [{"name": service.metadata["name"], "port": 80}]}],
            },
            opts=in_ns,
        )
        pulumi.export("ready_replicas", deployment.status["ready_replicas"])

    return program


@pytest.fixture(scope="module")
def tools_present() -> None:
    tool("pulumi")
    tool("pulumi-resource-kubernetes")


def kube(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download (a plugin, an update check) would go through this dead proxy and fail."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], object]]]:
    """Destroys whatever a test deployed, also when it fails half-way."""
    steps: list[Callable[[], object]] = []
    yield steps
    for step in reversed(steps):
        step()


def test_pulumi_up_preview_destroy(
    local_env: LocalEnvironment, tools_present: None, cleanup: list[Callable[[], object]]
) -> None:
    target = PulumiTarget.local(local_env.info, "us-east-1")
    stack = select_stack(target, PROJECT, "available", web_stack("web-available"))
    cleanup.append(lambda: destroy(stack, remove=True))

    result = up(stack)

    assert result.summary.result == "succeeded"
    assert result.summary.resource_changes == {"create": 5}  # stack, namespace, deployment, service, route
    assert result.outputs["ready_replicas"].value == 2
    with kube(target.kubeconfig) as api:
        deployment = client.AppsV1Api(api).read_namespaced_deployment_status("web", "web-available")
        available = {c.type: c.status for c in deployment.status.conditions}["Available"]
        assert available == "True"
        assert client.CoreV1Api(api).read_namespaced_service("web", "web-available").spec.ports[0].port == 80
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "web-available", "httproutes", "web"
        )
        assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "web"

    assert preview_changes(stack) == {}

    destroyed = destroy(stack)
    assert destroyed.summary.resource_changes == {"delete": 5}
    with kube(target.kubeconfig) as api, pytest.raises(client.ApiException) as gone:
        client.AppsV1Api(api).read_namespaced_deployment("web", "web-available")
    assert gone.value.status == 404
    # Offline: the provider came from PATH; nothing was downloaded into PULUMI_HOME.
    plugins = Path(local_env.info.pulumi_home) / "plugins"
    assert not plugins.exists() or not any(plugins.glob("resource-kubernetes*"))


def test_pulumi_up_fails_when_the_deployment_never_becomes_available(
    local_env: LocalEnvironment, tools_present: None, cleanup: list[Callable[[], object]]
) -> None:
    """No kwok node carries the label the pods ask for, so they stay Pending and `up` must fail."""
    target = PulumiTarget.local(local_env.info, "us-west-2")
    program = web_stack(
        "web-pending", node_selector={"markethub.io/no-such-pool": "true"}, create_timeout="20s"
    )
    stack = select_stack(target, PROJECT, "never-available", program)
    cleanup.append(lambda: destroy(stack, remove=True))

    with pytest.raises(PulumiRunError) as failed:
        up(stack)

    assert str(failed.value) == (
        f"pulumi up of {PROJECT}/never-available failed:"
        " kubernetes:apps/v1:Deployment (web): 'web' timed out waiting to be Ready"
    )
    assert "Minimum number of live Pods was not attained" in failed.value.output
    with kube(target.kubeconfig) as api:
        deployment = client.AppsV1Api(api).read_namespaced_deployment_status("web", "web-pending")
        assert not deployment.status.ready_replicas
