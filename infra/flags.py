"""FeatureFlags: the stage's feature set as OpenFeature flagd flag definitions in a ConfigMap.

Each plan feature is a string flag with the three plan states as variants, defaulting to the
current stage's state (``limited`` is the seed's "logging only" / "basic caching" form). A
rolled-back stack serves the plan's stable feature set instead, so a rollback takes the candidate's
features away from every user at once. The app's flagd provider reads the mounted file and watches
it, so new flags need no restart.

Sticky users (issue 18): in a percentage stage, a feature whose stage state differs from the
stable one goes to users, not requests. Its default is the stable state, and its targeting is flagd's
``fractional`` bucketed by the evaluation context's ``targetingKey`` (the app sets the user id):
``[[stage state, weight], [stable state, 100 - weight]]``. flagd hashes the key into [0, 100) and
takes the first variant whose running total exceeds the bucket, so with the stage's state listed
first a user on it at 2% is still on it at 5% and 10%; bucketing by the key alone (not flag key plus
key) gives one user the same side for every feature. The beta cohort (context ``cohort`` equal to
the cohort route's header value) keeps the stage's features. Weight 100 needs no targeting; a
rollback serves the stable set to everyone, as before. Cohort stages (beta) are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra import kube, naming
from infra.kube import Manifest
from rollout_policies.plan.model import Feature, FeatureState, Plan, Stage

COMPONENT = "flags"
FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
FLAGS_FILE = "flags.json"


@dataclass(frozen=True)
class Sticky:
    """A percentage stage's split of its features by user: the stable set and the candidate's weight."""

    stable: Mapping[str, Feature]
    weight: int  # percent of users on the stage's features
    cohort: str | None = None  # context ``cohort`` value that keeps the stage's features (beta users)


def sticky_for(
    plan: Plan, stage: Stage, weight: int, *, rolled_back: bool, cohort: str | None
) -> Sticky | None:
    """The split a stack serves: percentage stages only, not after a rollback (then the stable set)."""
    if rolled_back or stage.audience.kind != "percentage":
        return None
    return Sticky(plan.stable_feature_set(), weight, cohort)


@dataclass(frozen=True)
class FlagsArgs:
    service: str
    namespace: str
    stage: Stage
    # After a rollback: the plan's stable feature set instead of the stage's (``Plan.stable_feature_set``).
    stable_features: dict[str, Feature] | None = None
    sticky: Sticky | None = None

    @property
    def features(self) -> dict[str, Feature]:
        return self.stage.features if self.stable_features is None else self.stable_features


def flag_key(feature: str) -> str:
    """Plan feature ids to flag keys: ``social_sharing`` -> ``social-sharing``."""
    return feature.replace("_", "-").lower()


def sticky_targeting(stage_state: str, stable_state: str, weight: int, cohort: str | None) -> Any:
    """flagd targeting: the stage's state for ``weight`` percent of users, by user (pure)."""
    split: Any = (
        {"fractional": [{"var": "targetingKey"}, [stage_state, weight], [stable_state, 100 - weight]]}
        if weight > 0
        else stable_state
    )
    if cohort is None:
        return split
    return {"if": [{"==": [{"var": "cohort"}, cohort]}, stage_state, split]}


def flag_definitions(features: Mapping[str, Feature], sticky: Sticky | None = None) -> dict[str, Any]:
    """The flagd document for a feature set: a stage's, or the stable set after a rollback (pure)."""
    flags = {}
    for feature_id in sorted(features):
        feature = features[feature_id]
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {state.value: state.value for state in FeatureState},
            "defaultVariant": feature.state.value,
            **({"metadata": {"note": feature.note}} if feature.note else {}),
        }
        off = Feature(state=FeatureState.DISABLED)
        stable = sticky.stable.get(feature_id, off).state.value if sticky else feature.state.value
        if sticky is not None and stable != feature.state.value and sticky.weight < 100:
            flag["defaultVariant"] = stable
            if sticky.weight > 0 or sticky.cohort is not None:
                flag["targeting"] = sticky_targeting(
                    feature.state.value, stable, sticky.weight, sticky.cohort
                )
        flags[flag_key(feature_id)] = flag
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
        "data": {
            FLAGS_FILE: json.dumps(flag_definitions(args.features, args.sticky), indent=1, sort_keys=True)
        },
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
