"""The markethub-rollout policy pack: the rollout's invariants on every preview (see infra/policies.py)."""

import sys
from pathlib import Path

# Run from policy/, the pack finds the project's packages one folder up (also when not installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy_pack import PACK_NAME, all_policies

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=all_policies(Path(__file__).resolve().parent.parent),
)
