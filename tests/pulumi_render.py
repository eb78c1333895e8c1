"""The Pulumi program run under mocks: what it declares for a stack, as the provider would receive it.

Shared by the program's tests (``tests/infra/infra_helpers.py``) and the shipped-wiring tests
(``tests/wiring/shipped.py``). The mocks are set on import, before the program is imported.

``deploy(settings, plan)`` runs ``infra.program.build`` under the mocks and returns every resource
the program registered with its inputs, which is what ``pulumi preview`` would send to the provider;
``render(stack_file)`` does the same for a stack file as the CLI would feed it
(``settings_from_stack_file``, and the plan the stack names) and returns the Kubernetes objects.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs back as outputs and records every registration."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


pulumi.runtime.set_mocks(RecordingMocks(), project="markethub-rollout", stack="prod-us-east-1", preview=False)
_PROGRAM_LOOP = asyncio.get_event_loop_policy().get_event_loop()

from infra.program import build, load_plan_file, resolve_plan_path  # noqa: E402  (after the mocks)
from infra.settings import StackSettings, settings_from_stack_file  # noqa: E402
from rollout_policies.plan.model import Plan  # noqa: E402


@dataclass(frozen=True)
class Registered:
    type: str
    name: str  # the Pulumi logical name
    inputs: dict[str, Any]

    @property
    def k8s_name(self) -> str:
        return str(self.inputs.get("metadata", {}).get("name", ""))


@dataclass(frozen=True)
class Deployed:
    resources: tuple[Registered, ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r.inputs for r in self.resources if r.type.endswith(f":{kind}")]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [inputs for inputs in self.of_kind(kind) if inputs["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    def by_identity(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Resources keyed as Pulumi keys them (type, logical name): what a preview diffs."""
        return {(r.type, r.name): r.inputs for r in self.resources}

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """The manifests (inputs with a ``kind``) in the order the program registered them."""
        return [r.inputs for r in self.resources if isinstance(r.inputs, dict) and "kind" in r.inputs]


def deploy(settings: StackSettings, plan: Plan) -> Deployed:
    # The program's module-level futures live on the loop that was current when it was imported. A test
    # earlier in the session that ran asyncio.run() in this thread left the thread with no loop (or
    # another one): put the program's loop back, or its futures are "attached to a different loop".
    asyncio.set_event_loop(_PROGRAM_LOOP)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="markethub-rollout", stack=settings.stack, preview=False)

    @pulumi.runtime.test
    def program() -> None:
        build(settings, plan)

    program()
    return Deployed(tuple(Registered(r.typ, r.name, _plain(r.inputs)) for r in mocks.resources))


def render(stack_file: Path) -> list[dict[str, Any]]:
    """The Kubernetes objects the program declares for a shipped stack file and the plan it names."""
    settings = settings_from_stack_file(stack_file)
    return deploy(settings, load_plan_file(resolve_plan_path(settings.plan))).kubernetes_objects()


def _plain(value: Any) -> Any:
    # Mock inputs come back through protobuf: whole numbers arrive as floats. Compare as JSON would.
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
