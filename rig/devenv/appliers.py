"""The ``pulumi-local`` applier: the product's Automation-API applier, pointed at the local environment.

Registered under the ``markethub_rollout.appliers`` entry point (rig/pyproject.toml), so
``rollout rollback --apply --applier pulumi-local`` works from a source checkout while the product
itself never imports this package. The only difference from the production ``pulumi`` applier is
the environment each stack gets: the local file backend, the region's kubeconfig, moto for AWS,
and the pinned CLI from the tools cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from devenv.local import LocalEnvironment
from devenv.tools import tool
from rollout_policies.gitops.seams import ApplyError, AutomationApplier


def local_environment(project_dir: Path) -> Callable[[str], dict[str, str]]:
    """Variables for a stack of the local environment: its region's kubeconfig, the file backend."""

    def variables(stack: str) -> dict[str, str]:
        from infra.settings import settings_from_stack_file
        from rollout_policies.gitops.stack_config import config_name

        info = LocalEnvironment().load()
        if info is None:
            raise ApplyError("--apply: the local environment is not running (run `rollout env up`)")
        region = settings_from_stack_file(project_dir / config_name(stack)).region
        return {
            **info.pulumi_env(),
            **info.aws_env(region),
            "KUBECONFIG": str(info.kubeconfig(region)),
            "ROLLOUT_PULUMI": str(tool("pulumi")),
        }

    return variables


def pulumi_local(project_dir: Path) -> AutomationApplier:
    """The entry point's factory: an AutomationApplier with the local environment's variables."""
    return AutomationApplier(project_dir, local_environment(project_dir))
