"""Live traffic weights from the cluster: the weighted rule of the stack's HTTPRoute, read with the
Kubernetes client, and the health of each colour's Deployment and HPA. Used by ``rollout status
--live kubernetes`` to report drift between git and the cluster, and replicas ready against desired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_policies.errors import UserError
from rollout_policies.gitops.seams import LiveReading, WorkloadsReading
from rollout_policies.stack_file import config_name, read_config
from rollout_policies.state import Colour

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def route_weights(route: Mapping[str, Any], service: str) -> dict[Colour, int] | None:
    """The weights of the rule without header matches (everyone but the beta cohort).

    Backends are named ``<service>-<colour>``; a backendRef without a weight weighs 1, as Gateway API
    says. None when the route has no such rule or names other backends.
    """
    for rule in reversed(route.get("spec", {}).get("rules", []) or []):
        if any(match.get("headers") for match in rule.get("matches", []) or []):
            continue
        weights: dict[Colour, int] = {}
        for ref in rule.get("backendRefs", []) or []:
            name = str(ref.get("name", ""))
            for colour in Colour:
                if name == f"{service}-{colour.value}":
                    weights[colour] = int(ref.get("weight", 1))
        if set(weights) != set(Colour):
            return None
        total = sum(weights.values())
        if total == 0:
            return None
        # Gateway API weights are proportions; the stack config stores percent.
        return {colour: round(100 * weight / total) for colour, weight in weights.items()}
    return None


def deployment_replicas(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A Deployment's ready replicas against the replicas it asks for (``spec.replicas``, default 1)."""
    desired = int((deployment.get("spec") or {}).get("replicas", 1))
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
    return {"ready": ready, "desired": desired, "healthy": ready >= desired}


def hpa_replicas(hpa: Mapping[str, Any]) -> dict[str, Any]:
    """An HPA's current replicas against the ones it wants, inside its min and max."""
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    current = int(status.get("currentReplicas") or 0)
    desired = int(status.get("desiredReplicas") or 0)
    return {
        "current": current,
        "desired": desired,
        "min": spec.get("minReplicas", 1),
        "max": spec.get("maxReplicas"),
        "healthy": current == desired and desired > 0,
    }


@dataclass
class KubeLiveState:
    """Reads each stack's HTTPRoute from the cluster its config points at.

    The route is ``<service>`` in the stack's ``markethub-rollout:namespace`` (the names the Pulumi
    program gives it); the cluster is ``kubernetes:kubeconfig`` / ``kubernetes:context`` from the
    stack config, else ``$KUBECONFIG``. Anything unreadable is None (drift "unknown"), never a guess.
    """

    project_dir: Path
    service: str
    kubeconfig: Path | None = None

    def _settings(self, stack: str) -> dict[str, Any]:
        config = read_config(self.project_dir / config_name(stack))
        return {
            "namespace": config.get("markethub-rollout:namespace", "markethub"),
            "service": config.get("markethub-rollout:serviceName") or self.service,
            "context": config.get("kubernetes:context"),
            "kubeconfig": config.get("kubernetes:kubeconfig"),
        }

    def live_weights(self, stack: str) -> dict[Colour, int] | None:
        return self.read(stack).weights

    def _client(self, stack: str) -> tuple[dict[str, Any], Any] | str:
        """The stack's settings and an API client for its cluster, or why there is none, in one line."""
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            settings = self._settings(stack)
        except (UserError, OSError) as err:
            return one_line(err)
        try:
            kubeconfig = self.kubeconfig or settings["kubeconfig"]
            api = config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=settings["context"]
            )
        except (OSError, ConfigException) as err:
            where = f"kubeconfig context {settings['context']}" if settings["context"] else "kubeconfig"
            return f"{where}: {one_line(err)}"
        return settings, api

    def workloads(self, stack: str) -> WorkloadsReading:
        """Each colour's Deployment and HPA (both ``<service>-<colour>``): replicas ready or current
        against desired; a resource that cannot be read carries why instead."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        opened = self._client(stack)
        if isinstance(opened, str):
            return WorkloadsReading(None, opened)
        settings, api = opened
        namespace = settings["namespace"]
        apps, autoscaling = client.AppsV1Api(api), client.AutoscalingV2Api(api)
        health: dict[str, dict[str, dict[str, Any]]] = {}
        what = f"namespace {namespace}"
        try:
            for colour in Colour:
                name = f"{settings['service']}-{colour.value}"
                reads = {
                    "deployment": (apps.read_namespaced_deployment, deployment_replicas),
                    "hpa": (autoscaling.read_namespaced_horizontal_pod_autoscaler, hpa_replicas),
                }
                health[colour.value] = {}
                for kind, (read, judge) in reads.items():
                    what = f"{kind} {namespace}/{name}"
                    try:
                        found = api.sanitize_for_serialization(read(name, namespace, _request_timeout=10))
                        health[colour.value][kind] = judge(found)
                    except ApiException as err:
                        health[colour.value][kind] = {"why": f"{what}: HTTP {err.status} {err.reason}"}
        except (HTTPError, OSError) as err:
            # the cluster itself is unreachable: say so once, not once per resource
            return WorkloadsReading(None, f"{what}: {one_line(err)}")
        finally:
            api.close()
        return WorkloadsReading(health)

    def read(self, stack: str) -> LiveReading:
        """The route's weights, or None and why not, in one line (the client's own message)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        opened = self._client(stack)
        if isinstance(opened, str):
            return LiveReading(None, opened)
        settings, api = opened
        route_name = f"HTTPRoute {settings['namespace']}/{settings['service']}"
        try:
            custom = client.CustomObjectsApi(api)
            route = custom.get_namespaced_custom_object(
                GROUP, VERSION, settings["namespace"], PLURAL, settings["service"], _request_timeout=10
            )
        except ApiException as err:
            return LiveReading(None, f"{route_name}: HTTP {err.status} {err.reason}")
        except (HTTPError, OSError) as err:
            return LiveReading(None, f"{route_name}: {one_line(err)}")
        finally:
            api.close()
        weights = route_weights(route, settings["service"])
        if weights is None:
            return LiveReading(None, f"{route_name}: no rule weighing {settings['service']}-blue and -green")
        return LiveReading(weights)


def one_line(err: BaseException) -> str:
    """An exception's message on one line: its type and its words, whitespace folded, at most 300 chars.
    urllib3's retry error is unwrapped to what it wraps (the refused or timed-out connection)."""
    reason = getattr(err, "reason", None)
    if isinstance(reason, BaseException):
        err = reason
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text}"[:300]
