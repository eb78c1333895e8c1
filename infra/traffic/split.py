"""TrafficSplit: the route resources for the rollout's weights, rendered by the configured router.

This is the only component whose inputs change with a step, so ``pulumi preview`` of a promotion
within a stage shows an update of the route and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.settings import GatewayRef
from infra.traffic.registry import router_for
from infra.traffic.router import RouteSpec, rollout_annotations
from rollout_policies.state import Colour, RolloutState

COMPONENT = "traffic"


@dataclass(frozen=True)
class TrafficSplitArgs:
    service: str
    namespace: str
    port: int
    state: RolloutState
    plan_path: str
    cohort_header: str
    cohort_value: str
    router: str = "gateway-api"
    hostnames: tuple[str, ...] = ()
    gateway: GatewayRef = field(default_factory=GatewayRef)


def route_spec(args: TrafficSplitArgs) -> RouteSpec:
    """The router-independent description of the split (pure)."""
    state = args.state
    return RouteSpec(
        service=args.service,
        namespace=args.namespace,
        port=args.port,
        weights=dict(state.weights),
        candidate=state.candidate.colour,
        backends={colour: naming.colour_name(args.service, colour) for colour in Colour},
        cohort_header=args.cohort_header,
        cohort_value=args.cohort_value,
        cohort=state.cohort_on,
        hostnames=args.hostnames,
        gateway=args.gateway,
        labels=naming.base_labels(args.service, COMPONENT),
        annotations=rollout_annotations(
            stage=state.stage,
            step=state.step,
            weights=dict(state.weights),
            candidate=state.candidate.colour,
            plan=args.plan_path,
            rolled_back=state.rolled_back,
        ),
    )


class TrafficSplit(pulumi.ComponentResource):
    """The weighted route between the blue and green Services, plus the beta-cohort rule."""

    def __init__(self, name: str, args: TrafficSplitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:TrafficSplit", name, None, opts)
        router = router_for(args.router)
        child = kube.child_options(self, opts)
        manifests = router.manifests(route_spec(args))
        self.routes = [
            kube.apply(
                f"{name}-{m['kind'].lower()}-{index}" if index else f"{name}-{m['kind'].lower()}", m, child
            )
            for index, m in enumerate(manifests)
        ]
        self.register_outputs(
            {
                "router": router.name,
                "weights": {c.value: args.state.weights[c] for c in Colour},
                "cohort": args.state.cohort_on,
                "routes": [m["metadata"]["name"] for m in manifests],
            }
        )
