"""Seams to the cluster: applying traffic after a rollback, and reading live weights for drift.

Each is a one-method Protocol with a registry that rejects unknown names. The lead wires the
Pulumi automation-API applier; until then ``pulumi-cli`` shells out to the Pulumi CLI. Live state is
``kubernetes`` (the stack's HTTPRoute, read with the Kubernetes client) or ``none`` (drift "unknown").
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rollout_policies.errors import UserError
from rollout_policies.state import Colour

HTTPROUTE_TYPE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


class Applier(Protocol):
    """Makes the cluster serve what git says for one stack's traffic resources (the HTTPRoute)."""

    def apply_traffic(self, stack: str) -> None: ...


class LiveState(Protocol):
    """The weights the cluster serves for a stack, or None when they cannot be read."""

    def live_weights(self, stack: str) -> dict[Colour, int] | None: ...


class ApplyError(UserError):
    """Applying the traffic change failed; git already holds the rollback."""


@dataclass
class PulumiCliApplier:
    """``pulumi up --target <HTTPRoute URNs>`` from the project directory, which holds the stack configs."""

    project_dir: Path
    pulumi: str = "pulumi"
    timeout: float = 600.0

    def _run(self, stack: str, *args: str) -> str:
        args = (*args, "--stack", stack)
        try:
            done = subprocess.run(
                [self.pulumi, *args, "--non-interactive", "--cwd", str(self.project_dir)],
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except FileNotFoundError:
            raise ApplyError(f"--apply: {self.pulumi} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise ApplyError(f"--apply: pulumi {args[0]} took longer than {self.timeout:g}s") from None
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
            raise ApplyError(f"--apply: pulumi {args[0]} --stack {stack}: {tail[0]}")
        return done.stdout

    def traffic_urns(self, stack: str) -> list[str]:
        exported = json.loads(self._run(stack, "stack", "export"))
        resources = exported.get("deployment", {}).get("resources", []) or []
        return [r["urn"] for r in resources if r.get("type") == HTTPROUTE_TYPE]

    def apply_traffic(self, stack: str) -> None:
        urns = self.traffic_urns(stack)
        targets = [arg for urn in urns for arg in ("--target", urn)]
        # No HTTPRoute yet (a first deployment): a full up is the only way to get traffic right.
        self._run(stack, "up", "--yes", "--skip-preview", *targets)


@dataclass(frozen=True)
class NoLiveState:
    """Live state not wired: drift is reported as unknown, never as "in sync"."""

    def live_weights(self, stack: str) -> dict[Colour, int] | None:
        return None


APPLIERS: dict[str, Callable[[Path], Applier]] = {
    "pulumi-cli": lambda project_dir: PulumiCliApplier(project_dir),
}


def _kube_live(project_dir: Path, service: str) -> LiveState:
    from rollout_policies.gitops.kube_live import KubeLiveState

    return KubeLiveState(project_dir, service)


# name -> factory(project directory, the plan's service name)
LIVE_STATES: dict[str, Callable[[Path, str], LiveState]] = {
    "none": lambda project_dir, service: NoLiveState(),
    "kubernetes": _kube_live,
}


def make_applier(name: str, project_dir: Path) -> Applier:
    try:
        return APPLIERS[name](project_dir)
    except KeyError:
        raise UserError(f"--applier {name!r}: unknown (known: {', '.join(sorted(APPLIERS))})") from None


def make_live_state(name: str, project_dir: Path, service: str) -> LiveState:
    try:
        return LIVE_STATES[name](project_dir, service)
    except KeyError:
        raise UserError(f"--live {name!r}: unknown (known: {', '.join(sorted(LIVE_STATES))})") from None
