"""The router interface: what every traffic router renders (``infra.traffic.registry`` picks one by name).

A router turns a ``RouteSpec`` (weights, the cohort rule, the backends) into the manifests of its
own API: Gateway API HTTPRoute here; an Istio VirtualService or NGINX canary Ingress would each be a
new module with a class implementing ``Router`` and one line in ``registry.ROUTERS``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from infra import naming
from infra.kube import Manifest
from infra.settings import GatewayRef
from rollout_policies.state import Colour


@dataclass(frozen=True)
class RouteSpec:
    """Everything a router needs to send traffic: independent of any one router's API."""

    service: str
    namespace: str
    port: int
    weights: dict[Colour, int]
    candidate: Colour
    backends: dict[Colour, str]  # the per-colour Service names
    cohort_header: str
    cohort_value: str
    # False after a rollback: no cohort rule at all, so no user reaches the candidate.
    cohort: bool = True
    hostnames: tuple[str, ...] = ()
    gateway: GatewayRef = field(default_factory=GatewayRef)
    labels: dict[str, str] = field(default_factory=dict)
    # Stamped on the route so the policy pack can check any router: stage, step, weights, plan.
    annotations: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Router(Protocol):
    """A traffic router: the manifests that split a service's traffic between blue and green."""

    name: str

    def manifests(self, spec: RouteSpec) -> list[Manifest]:
        """The route objects for ``spec``, named explicitly so a new weight is an in-place update."""
        ...


def rollout_annotations(
    *,
    stage: str,
    step: int,
    weights: dict[Colour, int],
    candidate: Colour,
    plan: str,
    rolled_back: bool = False,
) -> dict[str, str]:
    """The annotations every route carries (values are strings, as Kubernetes requires)."""
    return {
        naming.ANN_STAGE: stage,
        naming.ANN_STEP: str(step),
        naming.ANN_WEIGHTS: json.dumps({c.value: weights[c] for c in (Colour.BLUE, Colour.GREEN)}),
        naming.ANN_CANDIDATE: candidate.value,
        naming.ANN_PLAN: plan,
        naming.ANN_ROLLED_BACK: "true" if rolled_back else "false",
    }
