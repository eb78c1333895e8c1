"""The Gateway API router: one HTTPRoute with weighted backendRefs and a beta-cohort header rule."""

from __future__ import annotations

from infra.kube import Manifest
from infra.traffic.router import RouteSpec
from rollout_policies.state import Colour


class GatewayApiRouter:
    """Renders ``gateway.networking.k8s.io/v1`` HTTPRoute.

    Two rules. The first matches the cohort header and sends it to the candidate only, whatever the
    weights say: Gateway API gives a rule with more header matches precedence over one with fewer, so
    the beta cohort always lands on green. The second splits everyone else by the rollout weights.
    Both backends stay listed at every weight (0 included), so a promotion changes numbers only.
    A rolled-back stack (``spec.cohort`` false) has the weighted rule alone: the cohort's requests
    then match it like everyone else's and go to stable.
    """

    name = "gateway-api"

    def manifests(self, spec: RouteSpec) -> list[Manifest]:
        parent: Manifest = {"name": spec.gateway.name, "namespace": spec.gateway.namespace}
        if spec.gateway.section_name:
            parent["sectionName"] = spec.gateway.section_name
        cohort_rule: Manifest = {
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": "/"},
                    "headers": [{"type": "Exact", "name": spec.cohort_header, "value": spec.cohort_value}],
                }
            ],
            "backendRefs": [self._backend(spec, spec.candidate, 1)],
        }
        weighted_rule: Manifest = {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                self._backend(spec, colour, spec.weights[colour]) for colour in (Colour.BLUE, Colour.GREEN)
            ],
        }
        route: Manifest = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": spec.service,
                "namespace": spec.namespace,
                "labels": dict(spec.labels),
                "annotations": dict(spec.annotations),
            },
            "spec": {
                "parentRefs": [parent],
                "rules": [cohort_rule, weighted_rule] if spec.cohort else [weighted_rule],
            },
        }
        if spec.hostnames:
            route["spec"]["hostnames"] = list(spec.hostnames)
        return [route]

    @staticmethod
    def _backend(spec: RouteSpec, colour: Colour, weight: int) -> Manifest:
        return {
            "group": "",
            "kind": "Service",
            "name": spec.backends[colour],
            "port": spec.port,
            "weight": weight,
        }
