"""The Kubernetes objects the Pulumi program declares for a stack file, rendered under Pulumi mocks.

The same ``infra.program.build`` that ``pulumi up`` runs, fed the stack file as the CLI would feed
it (``settings_from_stack_file``) and the plan the stack names; the mocks record every resource's
inputs, which are the manifests the provider would send to the API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi


class _Recording(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render(stack_file: Path) -> list[dict[str, Any]]:
    from infra.program import build, load_plan_file, resolve_plan_path
    from infra.settings import settings_from_stack_file

    settings = settings_from_stack_file(stack_file)
    plan = load_plan_file(resolve_plan_path(settings.plan))
    mocks = _Recording()
    pulumi.runtime.set_mocks(mocks, project="markethub-rollout", stack=settings.stack, preview=False)

    @pulumi.runtime.test
    def program() -> None:
        build(settings, plan)

    program()
    return [_plain(r.inputs) for r in mocks.resources if isinstance(r.inputs, dict) and "kind" in r.inputs]
