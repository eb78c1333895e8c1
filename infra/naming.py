"""Resource names, labels and annotation keys shared by every component (pure helpers).

Names are explicit (``metadata.name``) so Pulumi never auto-names, and therefore never replaces, a
resource because of a config change; a colour's objects are named ``<service>-<colour>``.
"""

from __future__ import annotations

from rollout_policies.state import Colour

PART_OF = "markethub-rollout"
NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
COLOUR = "rollout.markethub.io/colour"
ENVIRONMENT = "rollout.markethub.io/environment"
REGION = "rollout.markethub.io/region"

# Annotations every traffic router stamps on its route, so the policy pack can check any router.
ANN_STAGE = "rollout.markethub.io/stage"
ANN_STEP = "rollout.markethub.io/step"
ANN_WEIGHTS = "rollout.markethub.io/weights"
ANN_CANDIDATE = "rollout.markethub.io/candidate"
ANN_PLAN = "rollout.markethub.io/plan"
ANN_ROLLED_BACK = "rollout.markethub.io/rolled-back"


def colour_name(service: str, colour: Colour) -> str:
    return f"{service}-{colour.value}"


def base_labels(service: str, component: str) -> dict[str, str]:
    """Labels on every object: what it belongs to and who manages it."""
    return {NAME: service, COMPONENT: component, "app.kubernetes.io/part-of": PART_OF, MANAGED_BY: "pulumi"}


def selector(service: str, colour: Colour | None = None) -> dict[str, str]:
    """A pod selector. Never includes the version: a Deployment's selector is immutable."""
    labels = {NAME: service}
    if colour is not None:
        labels[COLOUR] = colour.value
    return labels


def resource_name(service: str, *parts: str) -> str:
    """The Pulumi logical name (and Kubernetes name) of a child: the service name as prefix."""
    return "-".join((service, *parts))
