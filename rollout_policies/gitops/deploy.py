"""Which stacks a change deploys: `pulumi preview` on a pull request, `pulumi up` on merge.

Pure: changed paths and each stack's environment in, the stacks to deploy and the ones skipped (with
why) out. A change to the program, the plan or the policy pack touches every stack; otherwise the
stacks whose config changed. A repository's CI deploys the stacks of one environment, ``production``
unless the repository variable ``ROLLOUT_ENVIRONMENT`` names another: a ``local-*`` stack
belongs to the local environment (``rollout env``), whose clusters exist only where it runs, which is
why only the dress rehearsal's repository (``rollout rehearse``) names ``local`` (docs/deploy.md).
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


def select_stacks(
    changed: Iterable[str], environments: Mapping[str, str], target: str = "production"
) -> Selection:
    """``environments``: every stack of the repository -> its ``environment`` setting; ``target``: the
    one environment this repository deploys."""
    changed = tuple(changed)
    if any(path.startswith(PROGRAM_PATHS) for path in changed):
        candidates = sorted(environments)
    else:
        candidates = sorted({s for s in map(config_stack, changed) if s is not None and s in environments})
    stacks = tuple(s for s in candidates if environments[s] == target)
    skipped = tuple(
        (s, f"environment {environments[s]}: this repository deploys {target} stacks")
        for s in candidates
        if environments[s] != target
    )
    return Selection(stacks, skipped)
