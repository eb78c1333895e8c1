"""Autoscaling: an autoscaling/v2 HPA per colour on CPU and a per-pod custom metric.

The stable colour keeps ``minReplicas`` (what carries all traffic), so a rollback needs no
scale-up. The candidate's floor is sized for the largest weight of its *stage* times the headroom
factor (the seed load-tests at 2x expected traffic): it is ready for every step of the stage before
the first one, and a step within a stage changes the route only, never the HPA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from infra.settings import CustomMetric
from rollout_policies.plan.model import Stage
from rollout_policies.state import Colour, RolloutState

COMPONENT = "autoscaling"


def candidate_min_replicas(
    stage: Stage, *, candidate_weight: int, full_replicas: int, headroom: float, max_replicas: int
) -> int:
    """The candidate's HPA floor at ``stage``: ceil(full x share x headroom), within [1, max].

    The share is the stage's largest step weight (or the live weight, if a person set it higher),
    so the floor is the same at every step of a stage and rises stage by stage.
    """
    largest = max([step.weight for step in stage.steps] + [float(candidate_weight)])
    wanted = math.ceil(full_replicas * (largest / 100.0) * headroom - 1e-9)
    return max(1, min(wanted, max_replicas))


@dataclass(frozen=True)
class AutoscalingArgs:
    service: str
    namespace: str
    state: RolloutState
    stage: Stage
    min_replicas: int = 4
    max_replicas: int = 20
    headroom: float = 2.0
    cpu_utilization: int = 70
    custom_metric: CustomMetric = field(default_factory=CustomMetric)

    def floor(self, colour: Colour) -> int:
        if colour is self.state.stable.colour:
            return self.min_replicas
        return candidate_min_replicas(
            self.stage,
            candidate_weight=self.state.candidate_weight,
            full_replicas=self.min_replicas,
            headroom=self.headroom,
            max_replicas=self.max_replicas,
        )


def hpa_manifest(args: AutoscalingArgs, colour: Colour) -> Manifest:
    name = naming.colour_name(args.service, colour)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {
                **naming.base_labels(args.service, COMPONENT),
                **naming.selector(args.service, colour),
            },
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": args.floor(colour),
            "maxReplicas": args.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": args.cpu_utilization},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": args.custom_metric.name},
                        "target": {"type": "AverageValue", "averageValue": args.custom_metric.average_value},
                    },
                },
            ],
        },
    }


class Autoscaling(pulumi.ComponentResource):
    """One HPA per colour; the candidate's floor follows its stage's traffic share."""

    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:Autoscaling", name, None, opts)
        child = kube.child_options(self, opts)
        self.hpas = {
            colour: kube.apply(f"{name}-{colour.value}", hpa_manifest(args, colour), child)
            for colour in Colour
        }
        self.register_outputs({"minReplicas": {c.value: args.floor(c) for c in Colour}})
