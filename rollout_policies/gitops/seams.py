"""Seams to the cluster: applying traffic after a rollback, and reading live weights for drift.

Each is a one-method Protocol with a registry that rejects unknown names. The lead wires the
Pulumi automation-API applier; until then ``pulumi-cli`` shells out to the Pulumi CLI. Live state is
``kubernetes`` (the stack's HTTPRoute, read with the Kubernetes client) or ``none`` (drift "unknown").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rollout_policies.errors import UserError
from rollout_policies.plugins import APPLIERS_GROUP, registered
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


@dataclass
class AutomationApplier:
    """``pulumi up --target <HTTPRoute>`` through the Automation API, from the project directory.

    The project (Pulumi.yaml) and the stack's config (Pulumi.<stack>.yaml, just rolled back) are read
    by the real CLI from ``project_dir``; the program is ``infra.program.main`` hosted in this process,
    so no Python language host plugin is needed. ``environment(stack)`` gives the CLI's variables
    (backend, passphrase, KUBECONFIG): by default this process's own, for the local environment the
    region's kubeconfig from env.json.
    """

    project_dir: Path
    environment: Callable[[str], dict[str, str]] = field(default=lambda stack: {})

    def stack(self, stack: str) -> Any:
        from pulumi import automation as auto

        from infra.program import main

        def program() -> None:
            main()

        environment = self.environment(stack)
        workspace = auto.LocalWorkspace(
            work_dir=str(self.project_dir),
            program=program,
            env_vars=environment,
            pulumi_command=pulumi_command(environment),
        )
        try:
            return auto.Stack.create_or_select(stack, workspace)
        except auto.CommandError as err:
            raise ApplyError(f"--apply: pulumi stack {stack}: {_last_error(str(err))}") from None

    def apply_traffic(self, stack: str) -> None:
        from pulumi import automation as auto

        selected = self.stack(stack)
        try:
            exported = selected.export_stack().deployment or {}
            urns = [r["urn"] for r in exported.get("resources", []) or [] if r.get("type") == HTTPROUTE_TYPE]
            # No HTTPRoute yet (a first deployment): a full up is the only way to get traffic right.
            selected.up(target=urns or None, color="never")
        except auto.CommandError as err:
            raise ApplyError(f"--apply: pulumi up --stack {stack}: {_last_error(str(err))}") from None


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "failed")[:300]


def pulumi_binary(environment: Mapping[str, str] | None = None) -> Path:
    """The Pulumi CLI a production applier runs: ``ROLLOUT_PULUMI`` when set, else ``pulumi`` on PATH.

    A missing one is a one-line ApplyError; nothing here knows about the development tool cache.
    """
    variables = os.environ if environment is None else environment
    configured = variables.get("ROLLOUT_PULUMI")
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ApplyError(f"--apply: ROLLOUT_PULUMI={configured}: not an executable file")
        return path
    found = shutil.which("pulumi", path=variables.get("PATH", os.defpath))
    if found is None:
        raise ApplyError("--apply: the Pulumi CLI is not on PATH (install it, or set ROLLOUT_PULUMI)")
    return Path(found)


def pulumi_command(environment: Mapping[str, str] | None = None) -> Any:
    """The Automation API's handle on :func:`pulumi_binary`, wherever the binary lives."""
    from pulumi import automation as auto

    binary = pulumi_binary(environment)
    # PulumiCommand's constructor runs `pulumi version` from PATH whatever binary is meant, so with
    # ROLLOUT_PULUMI set and no `pulumi` on PATH it would fail: ask the chosen binary itself.
    try:
        shown = subprocess.run(
            [str(binary), "version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise ApplyError(f"--apply: {binary} version: {err}") from None
    from semver import VersionInfo

    command = auto.PulumiCommand.__new__(auto.PulumiCommand)
    command.command = str(binary)
    try:
        command.version = VersionInfo.parse(shown.removeprefix("v"))
    except ValueError:
        command.version = None  # a development build without a version: nothing to check against
    return command


APPLIERS: dict[str, Callable[[Path], Applier]] = {
    "pulumi": lambda project_dir: AutomationApplier(project_dir, lambda stack: dict(os.environ)),
    "pulumi-cli": lambda project_dir: PulumiCliApplier(project_dir),
}


def applier_names() -> list[str]:
    """The built-in appliers and those other installed distributions register (plugins.APPLIERS_GROUP)."""
    return sorted({*APPLIERS, *registered(APPLIERS_GROUP)})


def _kube_live(project_dir: Path, service: str) -> LiveState:
    from rollout_policies.gitops.kube_live import KubeLiveState

    return KubeLiveState(project_dir, service)


# name -> factory(project directory, the plan's service name)
LIVE_STATES: dict[str, Callable[[Path, str], LiveState]] = {
    "none": lambda project_dir, service: NoLiveState(),
    "kubernetes": _kube_live,
}


def make_applier(name: str, project_dir: Path) -> Applier:
    factory = APPLIERS.get(name)
    if factory is None:
        plugin = registered(APPLIERS_GROUP).get(name)
        if plugin is None:
            raise UserError(f"--applier {name!r}: unknown (known: {', '.join(applier_names())})")
        factory = plugin.load()
    return factory(project_dir)


def make_live_state(name: str, project_dir: Path, service: str) -> LiveState:
    try:
        return LIVE_STATES[name](project_dir, service)
    except KeyError:
        raise UserError(f"--live {name!r}: unknown (known: {', '.join(sorted(LIVE_STATES))})") from None
