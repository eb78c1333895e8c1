"""Run a Pulumi inline program for a stack against one region's cluster, with the real CLI and provider.

The Automation API hosts the Python program in this process (no `pulumi-language-python` needed);
the `pulumi` CLI and the `pulumi-resource-kubernetes` provider are the real binaries from the tools
cache, found on PATH with automatic plugin downloads turned off, so nothing is fetched.

    target = PulumiTarget.local(env.info, "us-east-1")
    stack = select_stack(target, "markethub", "canary", program)
    up(stack)
    assert preview_changes(stack) == {}
    destroy(stack)

``PulumiTarget`` is all that differs between the local environment and a real cluster and backend:
build it by hand (kubeconfig path, backend URL, env) to point the same program at production.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from devenv.local import EnvInfo
from devenv.tools import path_with_tools, tools_cache
from rollout_policies.errors import UserError

Program = Callable[[], None]


class PulumiRunError(UserError):
    """A `pulumi up/preview/destroy` failed; the one-line message names the stack, the full log is kept."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class PulumiTarget:
    """Where a stack deploys: a cluster (kubeconfig), a Pulumi backend and the CLI's environment."""

    region: str
    kubeconfig: Path
    backend_url: str
    env: Mapping[str, str]
    work_root: Path
    pulumi_home: Path | None = None
    config: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def local(cls, info: EnvInfo, region: str) -> PulumiTarget:
        """A region of the local environment: its kubeconfig, the file backend, offline CLI settings."""
        kubeconfig = info.kubeconfig(region)
        return cls(
            region=region,
            kubeconfig=kubeconfig,
            backend_url=info.pulumi_backend_url,
            env={**info.pulumi_env(), **info.aws_env(region), "KUBECONFIG": str(kubeconfig)},
            work_root=Path(info.state_dir) / "pulumi" / "projects",
            pulumi_home=Path(info.pulumi_home),
        )

    @classmethod
    def from_environment(cls, region: str, kubeconfig: Path | str, work_root: Path | str) -> PulumiTarget:
        """A real cluster and backend: PULUMI_BACKEND_URL and the passphrase come from os.environ."""
        backend = os.environ.get("PULUMI_BACKEND_URL")
        if not backend:
            raise UserError("PULUMI_BACKEND_URL is not set: name the Pulumi backend to deploy with")
        env = {
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "KUBECONFIG": str(kubeconfig),
            "PATH": path_with_tools(),
        }
        return cls(region, Path(kubeconfig), backend, env, Path(work_root))


def pulumi_command() -> auto.PulumiCommand:
    """The pinned CLI from the tools cache (its bin/pulumi); a missing one is a one-line UserError."""
    root = tools_cache()
    if not os.access(root / "bin" / "pulumi", os.X_OK):
        raise UserError(f"missing tool 'pulumi': {root / 'bin' / 'pulumi'} not found (run `make tools`)")
    return auto.PulumiCommand(root=str(root))


def select_stack(
    target: PulumiTarget,
    project: str,
    stack: str,
    program: Program,
    *,
    config: Mapping[str, str] | None = None,
) -> auto.Stack:
    """Create or select ``project``/``stack`` on the target's backend, its provider aimed at the cluster."""
    work_dir = target.work_root / project
    work_dir.mkdir(parents=True, exist_ok=True)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=str(target.pulumi_home) if target.pulumi_home else None,
        env_vars=dict(target.env),
        secrets_provider="passphrase" if "PULUMI_CONFIG_PASSPHRASE" in target.env else None,
        project_settings=auto.ProjectSettings(
            name=project, runtime="python", backend=auto.ProjectBackend(url=target.backend_url)
        ),
        pulumi_command=pulumi_command(),
    )
    try:
        selected = auto.create_or_select_stack(
            stack_name=stack, project_name=project, program=program, opts=options
        )
        # The default Kubernetes provider reads this; an explicit provider can take the same path.
        selected.set_config("kubernetes:kubeconfig", auto.ConfigValue(str(target.kubeconfig)))
        for key, value in {**target.config, **(config or {})}.items():
            selected.set_config(key, auto.ConfigValue(value))
    except auto.CommandError as err:
        raise _failure("select", project, stack, target, err) from err
    return selected


def up(stack: auto.Stack, **options: Any) -> auto.UpResult:
    """`pulumi up`: a failure is a PulumiRunError carrying the CLI's output."""
    try:
        return stack.up(color="never", **options)
    except auto.CommandError as err:
        raise _failure("up", stack.workspace.project_settings().name, stack.name, None, err) from err


def preview_changes(stack: auto.Stack, **options: Any) -> dict[str, int]:
    """`pulumi preview`: the planned operations other than "same" (empty when nothing would change)."""
    try:
        result = stack.preview(color="never", **options)
    except auto.CommandError as err:
        raise _failure("preview", stack.workspace.project_settings().name, stack.name, None, err) from err
    return {op: count for op, count in result.change_summary.items() if op != "same" and count}


def destroy(stack: auto.Stack, *, remove: bool = False, **options: Any) -> auto.DestroyResult:
    """`pulumi destroy` (and, with ``remove``, delete the stack and its config)."""
    try:
        result = stack.destroy(color="never", **options)
        if remove:
            stack.workspace.remove_stack(stack.name)
        return result
    except auto.CommandError as err:
        raise _failure("destroy", stack.workspace.project_settings().name, stack.name, None, err) from err


def _failure(
    action: str, project: str, stack: str, target: PulumiTarget | None, err: auto.CommandError
) -> PulumiRunError:
    output = str(err)
    where = f" (region {target.region})" if target else ""
    return PulumiRunError(
        f"pulumi {action} of {project}/{stack}{where} failed: {first_error(output)}", output
    )


_RESOURCE = re.compile(r"^  (\S+ \(.+\)):$")


def first_error(output: str) -> str:
    """The first resource error in the CLI's Diagnostics, in one line (else its last error line)."""
    lines = output.splitlines()
    resource = ""
    for index, line in enumerate(lines):
        header = _RESOURCE.match(line)
        if header:
            resource = header.group(1)
            continue
        text = line.strip()
        if not text.startswith("error:") or not resource or resource.startswith("pulumi:pulumi:Stack"):
            continue
        reason = text.removeprefix("error:").strip()
        if re.fullmatch(r"\d+ errors occurred:", reason):
            # The provider lists its errors as bullets; the first says what failed.
            bullets = [b.strip().removeprefix("* ") for b in lines[index + 1 :] if b.strip().startswith("* ")]
            reason = bullets[0] if bullets else reason
        # "...failed to fully initialize or become live: 'web' timed out waiting to be Ready" -> the cause.
        reason = reason.rsplit("become live: ", 1)[-1]
        return f"{resource}: {reason}"[:300]
    errors = [line.strip() for line in lines if "error:" in line]
    return (errors or [line for line in lines if line.strip()] or ["no output"])[-1].strip()[:300]
