"""Seams to the cluster: applying traffic after a rollback, and reading live weights for drift.

Each is a one-method Protocol with a registry that rejects unknown names. The lead wires the
Pulumi automation-API applier; until then ``pulumi-cli`` shells out to the Pulumi CLI. Live state is
``kubernetes`` (the stack's HTTPRoute, read with the Kubernetes client) or ``none`` (drift "unknown").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.plugins import APPLIERS_GROUP, registered
from rollout_policies.state import Colour

log = logging.getLogger("rollout.gitops")

HTTPROUTE_TYPE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
# The flags ConfigMap is a child of the FeatureFlags component: its URN names the parent's type.
FLAGS_PARENT = "markethub:infra:FeatureFlags$"


def traffic_urns(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The URNs a rollback applies: the routes (weights and the cohort rule) and the flags ConfigMap,
    so every user leaves the candidate, and its features, in the same ``pulumi up``."""
    return [
        str(r["urn"])
        for r in resources
        if r.get("type") == HTTPROUTE_TYPE or FLAGS_PARENT in str(r.get("urn", ""))
    ]


class Applier(Protocol):
    """Makes the cluster serve what git says for one stack's traffic: the HTTPRoute (weights and the
    cohort rule) and the feature flags."""

    def apply_traffic(self, stack: str) -> None: ...


class LiveState(Protocol):
    """The weights the cluster serves for a stack, or None when they cannot be read."""

    def live_weights(self, stack: str) -> dict[Colour, int] | None: ...


class LiveReading(NamedTuple):
    """The cluster's weights for a stack, or None and, in one line, why they are unknown."""

    weights: dict[Colour, int] | None
    why: str | None = None


def read_live(live: LiveState, stack: str) -> LiveReading:
    """A live state's weights with the reason they are unknown: its own ``read`` where it has one
    (the Kubernetes reader, ``none``), else its ``live_weights`` and a reason naming the reader."""
    read = getattr(live, "read", None)
    if callable(read):
        reading: LiveReading = read(stack)
        return reading
    weights = live.live_weights(stack)
    return LiveReading(weights, None if weights is not None else f"{type(live).__name__} gave no weights")


class WorkloadsReading(NamedTuple):
    """Per colour, the health of its Deployment and HPA (replicas), or None and why it is unknown."""

    health: dict[str, dict[str, dict[str, Any]]] | None
    why: str | None = None


def read_workloads(live: LiveState, stack: str) -> WorkloadsReading:
    """A live state's Deployment and HPA health where it can read them (the Kubernetes reader)."""
    workloads = getattr(live, "workloads", None)
    if callable(workloads):
        reading: WorkloadsReading = workloads(stack)
        return reading
    if isinstance(live, NoLiveState):
        return WorkloadsReading(None, live.read(stack).why)
    return WorkloadsReading(None, f"{type(live).__name__} reads no Deployments or HPAs")


class ApplyError(UserError):
    """Applying the traffic change failed; git already holds the rollback."""


@dataclass
class PulumiCliApplier:
    """``pulumi up --target <HTTPRoute and flags URNs>`` from the project directory (the stack configs)."""

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
        return traffic_urns(exported.get("deployment", {}).get("resources", []) or [])

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

    def read(self, stack: str) -> LiveReading:
        return LiveReading(None, "not asked: --live none (--live kubernetes reads the cluster)")


@dataclass
class AutomationApplier:
    """``pulumi up --target <HTTPRoute and flags>`` through the Automation API, from the project directory.

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
            # The plan path in the stack config is relative to the project, not to this process.
            main(self.project_dir)

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

    # How long a rollback's apply waits for another update of the stack (the up workflow deploying the
    # push before the rollback's) to finish, before it fails and Alertmanager's next notice retries it.
    lock_wait: float = 120.0

    def apply_traffic(self, stack: str) -> None:
        from pulumi import automation as auto

        selected = self.stack(stack)
        deadline = time.monotonic() + self.lock_wait
        cancelled = False
        while True:
            try:
                exported = selected.export_stack().deployment or {}
                resources = exported.get("resources", []) or []
                urns = traffic_urns(resources)
                # No HTTPRoute yet (a first deployment): a full up is the only way to get traffic right.
                selected.up(target=urns or None, color="never")
                return
            except auto.CommandError as err:
                if not concurrent_update(err):
                    raise ApplyError(f"--apply: pulumi up --stack {stack}: {_last_error(str(err))}") from None
                if not cancelled and self._cancel_stale_lock(selected, stack):
                    cancelled = True
                    continue
                if time.monotonic() > deadline:
                    raise ApplyError(
                        f"--apply: pulumi up --stack {stack}: another update held the stack for "
                        f"{self.lock_wait:.0f}s: {_last_error(str(err))}"
                    ) from None
                log.warning("stack %s: another update is running; the rollback's apply waits for it", stack)
                time.sleep(LOCK_POLL_SECONDS)

    def _cancel_stale_lock(self, selected: Any, stack: str) -> bool:
        """Remove a file backend's stack lock whose holder (on this host) is dead: a killed ``pulumi up``.

        Only a ``file://`` backend's lock files can be read here; a lock held by a live process, or by
        another host, or in any other backend, is left for a person (the error names ``pulumi cancel``).
        """
        from pulumi import automation as auto

        dead = _dead_file_backend_locks(self.environment(stack) or dict(os.environ), stack)
        if not dead:
            return False
        try:
            selected.cancel()
        except auto.CommandError:
            return False
        for path, pid in dead:
            log.warning(
                "removed the stale Pulumi lock of stack %s held by dead pid %d (%s)", stack, pid, path
            )
        return True


# What the Pulumi CLI says when another update holds the stack: Pulumi Cloud's 409, a DIY backend's lock,
# and a file backend read while the other update writes its checkpoint.
CONCURRENT_UPDATE_MARKERS = (
    "Another update is currently in progress",
    "the stack is currently locked",
    "failed to load checkpoint: EOF",
)
LOCK_POLL_SECONDS = 2.0


def concurrent_update(err: BaseException) -> bool:
    """Another update of the same stack is running (retry once it is done); not a failure of this one."""
    from pulumi import automation as auto

    text = str(err)
    return isinstance(err, auto.ConcurrentUpdateError) or any(m in text for m in CONCURRENT_UPDATE_MARKERS)


def _dead_file_backend_locks(environment: Mapping[str, str], stack: str) -> list[tuple[Path, int]]:
    """Lock files of a ``file://`` backend's stack whose holder ran on this host and is gone.

    Empty when any lock's holder is alive or unknown: then nothing may be removed.
    """
    url = environment.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        return []
    locks = Path(url[len("file://") :]).expanduser() / ".pulumi" / "locks"
    leaf = stack.rsplit("/", 1)[-1]
    dead: list[tuple[Path, int]] = []
    for path in locks.rglob("*.json") if locks.is_dir() else ():
        if path.parent.name != leaf:
            continue
        try:
            holder = json.loads(path.read_text())
            pid = int(holder["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return []
        if holder.get("hostname") != socket.gethostname() or _alive(pid):
            return []
        dead.append((path, pid))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "failed")[:300]


def pulumi_binary(environment: Mapping[str, str] | None = None) -> Path:
    """The Pulumi CLI a production applier runs: ``ROLLOUT_PULUMI`` when set, else ``pulumi`` on PATH.

    A missing one is a one-line ApplyError; nothing here knows about the development tool cache.
    """
    env = os.environ if environment is None else environment
    configured = env.get("ROLLOUT_PULUMI")  # envvars.PULUMI
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ApplyError(f"--apply: {envvars.PULUMI}={configured}: not an executable file")
        return path
    found = shutil.which("pulumi", path=env.get("PATH", os.defpath))
    if found is None:
        raise ApplyError("--apply: the Pulumi CLI is not on PATH (install it, or set ROLLOUT_PULUMI)")
    return Path(found)


def pulumi_command(environment: Mapping[str, str] | None = None) -> Any:
    """The Automation API's handle on :func:`pulumi_binary`, wherever the binary lives."""
    from pulumi import automation as auto

    binary = pulumi_binary(environment)
    # PulumiCommand() itself runs `pulumi version` from this process's PATH, which need not hold
    # the binary (ROLLOUT_PULUMI, or a PATH given in `environment`): build it around the binary.
    command = auto.PulumiCommand.__new__(auto.PulumiCommand)
    command.command = str(binary)
    command.version = _cli_version(binary, environment)
    return command


def _cli_version(binary: Path, environment: Mapping[str, str] | None) -> Any:
    from semver import VersionInfo

    try:
        done = subprocess.run(
            [str(binary), "version"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**(os.environ if environment is None else environment), "PULUMI_SKIP_UPDATE_CHECK": "true"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ApplyError(f"--apply: {binary} version: {err}") from None
    if done.returncode != 0:
        raise ApplyError(f"--apply: {binary} version: exit status {done.returncode}")
    try:
        return VersionInfo.parse(done.stdout.strip().removeprefix("v"))
    except ValueError:
        return None


APPLIERS: dict[str, Callable[[Path], Applier]] = {
    "pulumi": lambda project_dir: AutomationApplier(project_dir, lambda stack: dict(os.environ)),
    "pulumi-cli": lambda project_dir: PulumiCliApplier(project_dir),
}


# The appliers that run the Pulumi CLI found by pulumi_binary (checked when `rollout serve` starts).
PRODUCTION_APPLIERS = ("pulumi",)


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
