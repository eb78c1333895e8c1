"""FeatureFlags: the stage's feature set as OpenFeature flagd flag definitions in a ConfigMap.

Each plan feature is a string flag with the three plan states as variants, defaulting to the
current stage's state (``limited`` is the seed's "logging only" / "basic caching" form). A
rolled-back stack serves the plan's stable feature set instead, so a rollback takes the candidate's
features away from every user at once. The app's flagd provider reads the mounted file and watches
it, so new flags need no restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from rollout_policies.plan.model import Feature, FeatureState, Stage

COMPONENT = "flags"
FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
FLAGS_FILE = "flags.json"


@dataclass(frozen=True)
class FlagsArgs:
    service: str
    namespace: str
    stage: Stage
    # After a rollback: the plan's stable feature set instead of the stage's (``Plan.stable_feature_set``).
    stable_features: dict[str, Feature] | None = None

    @property
    def features(self) -> dict[str, Feature]:
        return self.stage.features if self.stable_features is None else self.stable_features


def flag_key(feature: str) -> str:
    """Plan feature ids to flag keys: ``social_sharing`` -> ``social-sharing``."""
    return feature.replace("_", "-").lower()


def flag_definitions(features: Mapping[str, Feature]) -> dict[str, Any]:
    """The flagd document for a feature set: a stage's, or the stable set after a rollback (pure)."""
    flags = {}
    for feature_id in sorted(features):
        feature = features[feature_id]
        flags[flag_key(feature_id)] = {
            "state": "ENABLED",
            "variants": {state.value: state.value for state in FeatureState},
            "defaultVariant": feature.state.value,
            **({"metadata": {"note": feature.note}} if feature.note else {}),
        }
    # No stage id in the document: it changes only when the feature set does, not at every stage.
    return {
        "$schema": FLAGD_SCHEMA,
        "metadata": {"flagSetId": "markethub-rollout"},
        "flags": flags,
    }


def config_map_name(service: str) -> str:
    return f"{service}-flags"


def flags_manifest(args: FlagsArgs) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(args.service),
            "namespace": args.namespace,
            "labels": naming.base_labels(args.service, COMPONENT),
        },
        "data": {FLAGS_FILE: json.dumps(flag_definitions(args.features), indent=1, sort_keys=True)},
    }


class FeatureFlags(pulumi.ComponentResource):
    """The flagd flag definitions for the current stage."""

    def __init__(self, name: str, args: FlagsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:FeatureFlags", name, None, opts)
        self.config_map = kube.apply(f"{name}-flags", flags_manifest(args), kube.child_options(self, opts))
        self.register_outputs(
            {
                "stage": args.stage.id,
                "stable": args.stable_features is not None,
                "flags": {flag_key(k): v.state.value for k, v in args.features.items()},
            }
        )
