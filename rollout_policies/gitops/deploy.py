"""Which stacks a change deploys: `pulumi preview` on a pull request, `pulumi up` on merge.

Pure: changed paths and each stack's environment in, the stacks to deploy and the ones skipped (with
why) out. A change to the program, the plan or the policy pack touches every stack; otherwise the
stacks whose config changed. Only production stacks are ever deployed from CI: a ``local-*`` stack
belongs to the local environment (``rollout env``), and its clusters do not exist on a CI runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A change under these touches every stack.
PROGRAM_PATHS = ("infra/", "rollout_policies/plans/", "policy/", "Pulumi.yaml")


@dataclass(frozen=True)
class Selection:
    stacks: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (stack, why)


def config_stack(path: str) -> str | None:
    """``Pulumi.prod-us-east-1.yaml`` (at the top of the repository) -> ``prod-us-east-1``."""
    if "/" in path or not path.startswith("Pulumi.") or not path.endswith(".yaml") or path == "Pulumi.yaml":
        return None
    return path[len("Pulumi.") : -len(".yaml")]


def select_stacks(changed: Iterable[str], environments: Mapping[str, str]) -> Selection:
    """``environments``: every stack of the repository -> its ``environment`` setting."""
    changed = tuple(changed)
    if any(path.startswith(PROGRAM_PATHS) for path in changed):
        candidates = sorted(environments)
    else:
        candidates = sorted({s for s in map(config_stack, changed) if s is not None and s in environments})
    stacks = tuple(s for s in candidates if environments[s] == "production")
    skipped = tuple(
        (s, f"environment {environments[s]}: only production stacks deploy from CI")
        for s in candidates
        if environments[s] != "production"
    )
    return Selection(stacks, skipped)
