"""``rollout deploy preview|up``: `pulumi preview` / `pulumi up` of the stacks a change touches (CI).

The workflows call this rather than the `pulumi` command so the same code path runs in CI, in the
applier of a rollback and in the tests: the real Pulumi CLI (on PATH or ``ROLLOUT_PULUMI``) with the
program hosted in this process, the policy pack enforced, and only the stacks of the environment the
repository deploys touched (``production``; ``ROLLOUT_ENVIRONMENT`` names another, docs/deploy.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import click

from rollout_policies import envvars
from rollout_policies.cli.gitops_cmd import environment_option
from rollout_policies.errors import UserError
from rollout_policies.gitops.deploy import Selection, select_stacks
from rollout_policies.gitops.forge import DEFAULT_API_URL, make_forge

# What a pull request comment may hold (GitHub takes 65536 characters).
COMMENT_LIMIT = 60000


def _environments(project: Path) -> dict[str, str]:
    from infra.settings import settings_from_stack_file, stack_name

    found = {}
    for path in sorted(project.glob("Pulumi.*.yaml")):
        if path.name == "Pulumi.yaml":
            continue
        found[stack_name(path)] = settings_from_stack_file(path).environment.value
    return found


def _changed(project: Path, since: str) -> list[str]:
    if since.strip("0") == "":
        # GitHub's `before` of a branch's first push: nothing to compare with, so everything changed.
        return ["Pulumi.yaml"]
    done = subprocess.run(
        ["git", "-C", str(project), "diff", "--name-only", f"{since}...HEAD"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise UserError(
            f"--changed-since {since}: {done.stderr.strip().splitlines()[-1:] or ['git diff failed']}"
        )
    return done.stdout.split()


def _selection(project: Path, stacks: tuple[str, ...], since: str | None, target: str) -> Selection:
    environments = _environments(project)
    if stacks:
        for stack in stacks:
            if stack not in environments:
                raise UserError(f"--stack {stack}: no Pulumi.{stack}.yaml in {project}")
            if environments[stack] != target:
                raise UserError(
                    f"--stack {stack}: environment {environments[stack]}; this repository deploys "
                    f"{target} stacks (--environment, ${envvars.ENVIRONMENT})"
                )
        return Selection(tuple(dict.fromkeys(stacks)), ())
    if since is None:
        raise UserError("--changed-since: name the base commit (or name stacks with --stack)")
    return select_stacks(_changed(project, since), environments, target)


def _stack(project: Path, stack: str) -> Any:
    from pulumi import automation as auto

    from infra.program import main
    from rollout_policies.gitops.seams import pulumi_command

    def program() -> None:
        main()

    workspace = auto.LocalWorkspace(
        work_dir=str(project), program=program, env_vars=dict(os.environ), pulumi_command=pulumi_command()
    )
    try:
        return auto.Stack.create_or_select(stack, workspace)
    except auto.CommandError as err:
        raise UserError(f"pulumi stack {stack}: {_last_line(str(err))}") from None


def _absolute(policy_packs: tuple[str, ...]) -> list[str] | None:
    # The CLI does not find a relative policy-pack path (it resolves it elsewhere than the cwd).
    return [str(Path(p).resolve()) for p in policy_packs] or None


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "error" in line.lower()]
    return (lines[-1] if lines else (output.strip().splitlines() or ["failed"])[-1])[:300]


def _common(command: Any) -> Any:
    options = [
        click.option(
            "--project-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=Path("."),
            help="The Pulumi project (Pulumi.yaml and the stack files).",
        ),
        click.option("--stack", "stacks", multiple=True, help="A stack to deploy (repeatable)."),
        environment_option,
        click.option(
            "--changed-since", default=None, metavar="REF", help="Deploy the stacks changed since REF."
        ),
        click.option(
            "--policy-pack",
            "policy_packs",
            multiple=True,
            type=click.Path(exists=True),
            help="A policy pack to enforce (repeatable); policy/run-policy-pack is the project's.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group("deploy")
def deploy() -> None:
    """`pulumi preview` on a pull request, `pulumi up` on merge: production stacks a change touches."""


@deploy.command("preview")
@_common
@click.option("--comment-pr", type=int, default=None, help="Post each stack's preview on this pull request.")
@click.option(
    "--forge-repo",
    default=lambda: os.environ.get("GITHUB_REPOSITORY", ""),
    show_default="$GITHUB_REPOSITORY",
    help="owner/name of the repository on the forge.",
)
@click.option(
    "--forge-url",
    default=lambda: os.environ.get("GITHUB_API_URL", DEFAULT_API_URL),
    show_default="$GITHUB_API_URL or https://api.github.com",
    help="Forge API base URL.",
)
def preview(
    project_dir: Path,
    stacks: tuple[str, ...],
    changed_since: str | None,
    policy_packs: tuple[str, ...],
    comment_pr: int | None,
    forge_repo: str,
    forge_url: str,
    target: str,
) -> None:
    """Preview each stack (the diff a reviewer reads); exit status 1 when any preview fails."""
    from pulumi import automation as auto

    selection = _selection(project_dir, stacks, changed_since, target)
    forge = make_forge("github", forge_repo, forge_url) if comment_pr is not None else None
    for stack, why in selection.skipped:
        click.echo(f"skipped {stack}: {why}")
    failed = []
    for stack in selection.stacks:
        lines: list[str] = []
        try:
            result = _stack(project_dir, stack).preview(
                color="never", diff=True, policy_packs=_absolute(policy_packs), on_output=lines.append
            )
            changes = {op: n for op, n in result.change_summary.items() if op != "same" and n}
            summary = ", ".join(f"{n} to {op}" for op, n in sorted(changes.items())) or "no changes"
            verdict = f"preview ok ({summary})"
        except (auto.CommandError, UserError) as err:
            lines.append(str(err))
            verdict = "preview FAILED"
            failed.append(stack)
            click.echo(f"{stack}: {_last_line(str(err))}", err=True)
        click.echo(f"{stack}: {verdict}")
        if forge is not None and comment_pr is not None:
            text = "\n".join(lines)[-COMMENT_LIMIT:]
            forge.comment(
                comment_pr, f"### `pulumi preview` of stack `{stack}`: {verdict}\n\n```\n{text}\n```"
            )
    if not selection.stacks:
        click.echo(f"no {target} stack changed")
    if failed:
        raise click.exceptions.Exit(1)


@deploy.command("up")
@_common
@click.option(
    "--main",
    "main_branch",
    default="main",
    show_default=True,
    help="The branch whose newer commits supersede this checkout (fetched from origin before each stack).",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to wait for another update of a stack (the controller's rollback) to finish.",
)
def up(
    project_dir: Path,
    stacks: tuple[str, ...],
    changed_since: str | None,
    policy_packs: tuple[str, ...],
    target: str,
    main_branch: str,
    lock_wait: float,
) -> None:
    """`pulumi up` each stack, one at a time, stopping at the first failure (exit status 1).

    A stack that a newer commit on main changed again is skipped: that push's own run deploys it, and
    an older checkout must never undo it (a rollback the controller committed while this run waited).
    A stack another update holds is waited for, up to --lock-wait seconds, then checked again.
    """
    import time

    from pulumi import automation as auto

    from rollout_policies.gitops.seams import LOCK_POLL_SECONDS, concurrent_update

    selection = _selection(project_dir, stacks, changed_since, target)
    for stack, why in selection.skipped:
        click.echo(f"skipped {stack}: {why}")
    for stack in selection.stacks:
        deadline = time.monotonic() + lock_wait
        while True:
            newer = _superseded(project_dir, stack, main_branch, target)
            if newer:
                click.echo(
                    f"skipped {stack}: {main_branch} moved on ({newer[:12]} changed it again); "
                    "its run deploys it"
                )
                break
            click.echo(f"::group::pulumi up --stack {stack}")
            try:
                result = _stack(project_dir, stack).up(
                    color="never", policy_packs=_absolute(policy_packs), on_output=click.echo
                )
            except auto.CommandError as err:
                click.echo("::endgroup::")
                if concurrent_update(err) and time.monotonic() < deadline:
                    click.echo(f"{stack}: another update is running (the controller's rollback?); waiting")
                    time.sleep(LOCK_POLL_SECONDS)
                    continue
                click.echo(f"{stack}: up FAILED: {_last_line(str(err))}", err=True)
                raise click.exceptions.Exit(1) from None
            click.echo("::endgroup::")
            click.echo(f"{stack}: up {result.summary.result}")
            break
    if not selection.stacks:
        click.echo(f"no {target} stack changed")


def _superseded(project: Path, stack: str, main_branch: str, target: str) -> str | None:
    """The newer commit on origin's ``main_branch`` that touches ``stack`` again, when this checkout is
    behind it; None when it is not (or there is no origin to ask, as in a plain working copy)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)

    if git("fetch", "-q", "origin", main_branch).returncode != 0:
        return None
    tip = git("rev-parse", "FETCH_HEAD").stdout.strip()
    head = git("rev-parse", "HEAD").stdout.strip()
    if not tip or tip == head or git("merge-base", "--is-ancestor", "HEAD", tip).returncode != 0:
        return None
    changed = git("diff", "--name-only", f"HEAD...{tip}").stdout.split()
    return tip if stack in select_stacks(changed, _environments(project), target).stacks else None
