"""``rollout promote``, ``report``, ``rollback``, ``abort``, ``pause``, ``resume``, ``release``, ``retry`` and
``status``: wiring for the gitops engine."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from rollout_policies import envvars
from rollout_policies.core import Evidence, StageDecision, time_to_promotion
from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import GitOps, PromotionOutcome, StackStatus, default_actor
from rollout_policies.gitops.forge import DEFAULT_API_URL, Forge, make_forge
from rollout_policies.gitops.ledger import DecisionLedger
from rollout_policies.gitops.notify import Notifier
from rollout_policies.gitops.owners import (
    DEFAULT_REVIEWERS_FILE,
    load_handles,
    parse_handle_flags,
    reviewers_for,
)
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.gitops.seams import (
    LIVE_STATES,
    WorkloadsReading,
    applier_names,
    make_applier,
    make_live_state,
    read_workloads,
)
from rollout_policies.gitops.stack_config import config_name, stack_environment, stacks_in
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from rollout_policies.providers.drill_reports import DRILL_REPORTS, read_drill_results
from rollout_policies.stack_file import read_config
from rollout_policies.state import RolloutState

# Exit status of `promote` when a stack needs a rollback: CI can page or run `rollout rollback`.
EXIT_ROLLBACK_NEEDED = 3


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--now: not a time: {text!r} (write 2026-11-20T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise UserError(f"--now: {text} needs a time zone (write it as ...Z)")
    return moment


def complete_stacks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of --stack: the stacks with a rollout block in --repo/--config-dir."""
    folder = Path(ctx.params.get("repo_dir") or ".") / (ctx.params.get("config_dir") or "")
    try:
        return [stack for stack in stacks_in(folder) if stack.startswith(incomplete)]
    except (OSError, UserError):
        return []


def repository_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options naming the plan, the repository and its stacks (shared with `rollout serve`)."""
    options = [
        click.option(
            "--plan",
            "plan_path",
            type=click.Path(path_type=Path, dir_okay=False),
            default=DEFAULT_PLAN,
            show_default="the shipped markethub-mobile plan",
            help="Plan file.",
        ),
        click.option(
            "--repo",
            "repo_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=Path("."),
            help="The git clone holding the stack configs (default: the current directory).",
        ),
        click.option(
            "--config-dir",
            default="",
            help="Folder of the Pulumi.<stack>.yaml files inside the repository (default: its top).",
        ),
        click.option("--remote", default="origin", show_default=True, help="The git remote to push to."),
        click.option("--main", "main_branch", default="main", show_default=True, help="The main branch."),
        click.option(
            "--stack",
            "stacks",
            multiple=True,
            shell_complete=complete_stacks,
            help="A stack (repeatable; default: every stack config with a rollout block).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")(command)
    return repository_options(command)


def open_repository(
    plan_path: Path, repo_dir: Path, config_dir: str, remote: str, main_branch: str, stacks: tuple[str, ...]
) -> tuple[Plan, GitRepo, tuple[str, ...]]:
    plan = load_plan(plan_path)
    if not repo_dir.is_dir():
        raise UserError(f"--repo {repo_dir}: no such directory")
    repo = GitRepo(repo_dir, remote=remote, main=main_branch)
    if not stacks:
        stacks = stacks_in(repo_dir / config_dir)
        if not stacks:
            raise UserError(
                f"--repo {repo_dir}: no Pulumi.<stack>.yaml with a rollout block; name one with --stack"
            )
    return plan, repo, tuple(dict.fromkeys(stacks))


def _emit(as_json: bool, data: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


FORGE_REPO_HELP = "owner/name of the repository on the forge."


def forge_options(command: Callable[..., Any] | None = None, *, repo_help: str = FORGE_REPO_HELP) -> Any:
    """Where the forge is (its pull requests): --forge, --forge-url, --forge-repo.

    ``@forge_options`` as it is, or ``@forge_options(repo_help=...)`` for a command whose forge is
    optional and says what it is for (`rollout serve`, `rollout watch`).
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--forge", "forge_kind", default="github", show_default=True, help="Forge backend."),
            click.option(
                "--forge-url",
                default=lambda: os.environ.get("GITHUB_API_URL", DEFAULT_API_URL),
                show_default="$GITHUB_API_URL or https://api.github.com",
                help="Forge API base URL.",
            ),
            click.option(
                "--forge-repo",
                default=lambda: os.environ.get("GITHUB_REPOSITORY", ""),
                show_default="$GITHUB_REPOSITORY",
                help=repo_help,
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate if command is None else decorate(command)


def _known_environment(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from infra.settings import Environment

    known = [e.value for e in Environment]
    if value not in known:
        raise UserError(f"--environment {value!r}: not an environment (one of {', '.join(known)})")
    return value


def environment_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--environment: the one environment whose stacks this repository's automation runs (promote with
    no --stack, deploy preview|up). Production unless $ROLLOUT_ENVIRONMENT names another: the dress
    rehearsal's replica repository names ``local`` (docs/deploy.md, "Which stacks CI deploys")."""
    return click.option(
        "--environment",
        "target",
        default=lambda: os.environ.get(envvars.ENVIRONMENT) or "production",
        show_default=f"${envvars.ENVIRONMENT} or production",
        callback=_known_environment,
        help="The environment whose stacks this repository deploys and promotes.",
    )(command)


@click.command("promote")
@_common
@environment_option
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Measurements standing in for live providers (the `rollout evaluate` format).",
)
@click.option("--signoff", "signoffs", multiple=True, help="A manual criterion id signed off (repeatable).")
@click.option(
    "--now", "now_text", default=None, help="Decision time, ISO 8601 with zone (default: the clock)."
)
@click.option("--dry-run", is_flag=True, help="Decide and show the config diff; write nothing.")
@click.option("--no-pr", is_flag=True, help="Push the promotion branch but open no pull request.")
@forge_options
@click.option(
    "--reviewers-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"decision_authority name -> @handle map (default: <repo>/{DEFAULT_REVIEWERS_FILE}).",
)
@click.option("--reviewer", "reviewer_flags", multiple=True, help="NAME=@handle, overriding the file.")
@click.option("--actor", default=None, help="Who decides, for the audit trail (default: $GITHUB_ACTOR@host).")
@click.option(
    "--html",
    "html_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write each stack's gate report with plots here (<stack>.html and .json).",
)
@click.option(
    "--report-link",
    default="",
    help="Where the --html reports can be read (a CI run's artifacts): linked from each PR body.",
)
def promote(
    plan_path: Path,
    repo_dir: Path,
    config_dir: str,
    remote: str,
    main_branch: str,
    stacks: tuple[str, ...],
    as_json: bool,
    metrics_file: Path | None,
    signoffs: tuple[str, ...],
    now_text: str | None,
    dry_run: bool,
    no_pr: bool,
    forge_kind: str,
    forge_url: str,
    forge_repo: str,
    reviewers_file: Path | None,
    reviewer_flags: tuple[str, ...],
    actor: str | None,
    html_dir: Path | None,
    report_link: str,
    target: str,
) -> None:
    """Decide each stack's stage; on promote, propose the next step as a branch and a pull request.

    Exit status 0 for promote and hold, 3 when a stack needs a rollback, 2 for bad input.
    """
    now = _now(now_text)
    named = bool(stacks)
    plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
    skipped: list[str] = []
    if not named:
        # The scheduled run decides the stacks of the repository's environment (production); the
        # others (the local environment's) are promoted only when named, by `rollout env` or a person.
        other = {
            s
            for s in stacks
            if (stack_environment(repo_dir / config_dir / config_name(s)) or "production") != target
        }
        skipped = sorted(other)
        stacks = tuple(s for s in stacks if s not in other)
        if not stacks:
            raise UserError(
                f"--repo {repo_dir}: no {target} stack (only {', '.join(skipped)}); name one with --stack "
                f"or set --environment (${envvars.ENVIRONMENT})"
            )
    evidence_for = _evidence_source(plan, metrics_file, signoffs, now, drill_reports=repo_dir / DRILL_REPORTS)
    forge = None
    reviewers: tuple[str, ...] = ()
    if not dry_run and not no_pr:
        if not forge_repo:
            raise UserError(
                "--forge-repo: required to open pull requests (or set GITHUB_REPOSITORY, or --no-pr)"
            )
        if not os.environ.get(envvars.FORGE_TOKEN):
            # Found out before deciding, not after a promotion branch is pushed with no pull request.
            raise UserError(
                f"{envvars.FORGE_TOKEN}: not set; it opens the promotion pull requests (or --no-pr)"
            )
        source = reviewers_file or repo_dir / DEFAULT_REVIEWERS_FILE
        handles = load_handles(source) if (reviewers_file or source.exists() or not reviewer_flags) else {}
        handles.update(parse_handle_flags(reviewer_flags))
        reviewers = reviewers_for(plan, handles, str(source))
        forge = make_forge(forge_kind, forge_repo, forge_url)
    ops = GitOps(
        repo=repo,
        plan=plan,
        config_dir=config_dir,
        forge=forge,
        reviewers=reviewers,
        notifier=Notifier(plan.notifications),
        actor=actor or default_actor(),
        ledger=None if dry_run else DecisionLedger(repo),
        report_link=report_link if html_dir is not None else "",
    )
    outcomes = [
        decide_with_page(
            ops,
            stack,
            evidence_for,
            now=now,
            page=None if html_dir is None else html_dir / f"{stack}.html",
            dry_run=dry_run,
            open_pull=not no_pr,
        )
        for stack in stacks
    ]
    lines = [f"skipped: {stack}: not a {target} stack (name it with --stack)" for stack in skipped]
    for outcome in outcomes:
        lines.append(f"{outcome.result}: {outcome.message}")
        lines += [f"    {line}" for line in outcome.diff] if outcome.result == "dry-run" else []
        lines += [f"    reason: {reason}" for reason in outcome.decision.reasons]
        lines += [f"    warning: {w}" for w in outcome.warnings]
    _emit(as_json, [_promotion_dict(o) for o in outcomes], lines)
    if any(o.result == "rollback-needed" for o in outcomes):
        sys.exit(EXIT_ROLLBACK_NEEDED)


def decide_with_page(
    ops: GitOps,
    stack: str,
    evidence_for: Callable[[RolloutState], Evidence],
    *,
    now: datetime,
    page: Path | None,
    dry_run: bool,
    open_pull: bool,
) -> PromotionOutcome:
    """One stack's decision on the promotion path; with ``page``, its gate report written there.

    `rollout promote --html` and `rollout report` both come here, so the report a person renders
    locally is the one a promotion pull request links to.
    """
    judged: list[tuple[RolloutState, Evidence]] = []

    def recorded(state: RolloutState) -> Evidence:
        judged.append((state, evidence_for(state)))
        return judged[-1][1]

    outcome = ops.promote(stack, recorded, now=now, dry_run=dry_run, open_pull=open_pull)
    if page is not None and judged:
        _gate_page(page, ops.plan, stack, *judged[-1], outcome.decision)
    return outcome


def _gate_page(
    path: Path, plan: Plan, stack: str, state: RolloutState, evidence: Evidence, decision: StageDecision
) -> None:
    """The stack's gate report: the decision just made, after the same evidence replayed over the stage."""
    from rollout_policies.pages import gates

    history = gates.replay(
        plan,
        state.stage,
        state.step,
        evidence,
        now=decision.now,
        stage_started_at=state.stage_started_at,
        step_started_at=state.step_started_at,
    )
    gates.write(path, (*history[:-1], decision), plan=plan.name, stack=stack)


def _evidence_source(
    plan: Plan,
    metrics_file: Path | None,
    signoffs: tuple[str, ...],
    now: datetime,
    *,
    drill_reports: Path | None = None,
) -> Callable[[RolloutState], Evidence]:
    """Where a stack's evidence comes from: the metrics file, or the live sources; either way with
    the drill reports committed under ``drill_reports`` (for the plan's drill criteria)."""
    known = {c.id for s in plan.stages for c in (*s.go, *s.no_go)}
    for signoff in signoffs:
        if signoff not in known:
            raise UserError(f"--signoff {signoff!r}: not a criterion of plan {plan.name}")
    if metrics_file is not None:
        from rollout_policies.providers import MetricsFileProvider

        evidence = MetricsFileProvider(path=metrics_file, now=now).evidence(plan, signoffs)
        if drill_reports is not None:
            evidence = dataclasses.replace(evidence, drills=read_drill_results(drill_reports))
        return lambda state: evidence

    def live(state: RolloutState) -> Evidence:
        from rollout_policies.providers import collect_evidence

        # comparison gates: per-version counts since the stage started, from Prometheus
        return collect_evidence(
            plan,
            state.stage,
            now,
            since=state.stage_started_at,
            signoffs=signoffs,
            drill_reports=drill_reports,
        )

    return live


def _promotion_dict(outcome: PromotionOutcome) -> dict[str, Any]:
    return {
        "stack": outcome.stack,
        "decision": outcome.decision.action.value,
        "result": outcome.result,
        "message": outcome.message,
        "branch": outcome.branch,
        "commit": outcome.commit,
        "pull_request": outcome.pull.url if outcome.pull else None,
        "reasons": [str(r) for r in outcome.decision.reasons],
        "diff": list(outcome.diff),
        "warnings": list(outcome.warnings),
    }


@click.command("report")
@repository_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the gate report (its data goes beside it as <name>.json).",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Measurements standing in for live providers (the `rollout evaluate` format).",
)
@click.option("--signoff", "signoffs", multiple=True, help="A manual criterion id signed off (repeatable).")
@click.option(
    "--now", "now_text", default=None, help="Decision time, ISO 8601 with zone (default: the clock)."
)
def report(
    plan_path: Path,
    repo_dir: Path,
    config_dir: str,
    remote: str,
    main_branch: str,
    stacks: tuple[str, ...],
    html_path: Path,
    metrics_file: Path | None,
    signoffs: tuple[str, ...],
    now_text: str | None,
) -> None:
    """Render one stack's HTML gate report locally: the page `promote --html` attaches to its PR.

    The decision is made as `promote --dry-run` makes it; nothing is pushed, committed or posted.
    """
    if len(stacks) != 1:
        raise UserError("--stack: name exactly one stack to report on")
    now = _now(now_text)
    plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
    evidence_for = _evidence_source(plan, metrics_file, signoffs, now, drill_reports=repo_dir / DRILL_REPORTS)
    ops = GitOps(repo=repo, plan=plan, config_dir=config_dir)
    outcome = decide_with_page(
        ops, stacks[0], evidence_for, now=now, page=html_path, dry_run=True, open_pull=False
    )
    click.echo(f"wrote {html_path}: {outcome.message}")


def _rollback_command(verb: str, summary: str) -> click.Command:
    """`rollout rollback` and `rollout abort` (a rollback that also pauses): ONE commit on main."""
    words = "abort" if verb == "abort" else "roll back"

    @click.command(verb, help=summary)
    @_common
    @click.option("--reason", required=True, help="Why: goes into the commit, Slack and the page.")
    @click.option(
        "--evidence", "evidence", multiple=True, help="A link or figure behind the reason (repeatable)."
    )
    @click.option(
        "--apply", "apply_now", is_flag=True, help="Then apply the traffic resources (pulumi up --target)."
    )
    @click.option(
        "--applier",
        type=click.Choice(applier_names()),
        default="pulumi",
        show_default=True,
        help="How --apply reaches the cluster: pulumi (Automation API, backend and cluster from the "
        "environment and stack config), pulumi-cli "
        "(the `pulumi` command; needs its Python language host); pulumi-local where the development rig "
        "is installed (the local environment's clusters).",
    )
    @click.option(
        "--now", "now_text", default=None, help="Rollback time, ISO 8601 with zone (default: the clock)."
    )
    @click.option("--dry-run", is_flag=True, help="Show which stacks would change; write nothing.")
    @forge_options
    @click.option(
        "--actor",
        default=None,
        help=f"Who does the {verb}, for the audit trail (default: $GITHUB_ACTOR@host).",
    )
    def command(
        plan_path: Path,
        repo_dir: Path,
        config_dir: str,
        remote: str,
        main_branch: str,
        stacks: tuple[str, ...],
        as_json: bool,
        reason: str,
        evidence: tuple[str, ...],
        apply_now: bool,
        applier: str,
        now_text: str | None,
        dry_run: bool,
        forge_kind: str,
        forge_url: str,
        forge_repo: str,
        actor: str | None,
    ) -> None:
        now = _now(now_text)
        if not stacks:
            raise UserError(f"--stack: name the stacks to {words} (a {verb} never guesses)")
        plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
        ops = GitOps(
            repo=repo,
            plan=plan,
            config_dir=config_dir,
            forge=_optional_forge(forge_kind, forge_url, forge_repo) if not dry_run else None,
            notifier=Notifier(plan.notifications),
            actor=actor or default_actor(),
        )
        project = repo_dir / config_dir
        outcome = ops.rollback(
            stacks,
            reason=reason,
            now=now,
            evidence=evidence,
            applier=make_applier(applier, project) if apply_now and not dry_run else None,
            dry_run=dry_run,
            pause=verb == "abort",
        )
        lines = [f"{outcome.result}: {outcome.message}"] + [f"    warning: {w}" for w in outcome.warnings]
        data = {
            "stacks": list(outcome.stacks),
            "result": outcome.result,
            "message": outcome.message,
            "commit": outcome.commit,
            "applied": list(outcome.applied),
            "warnings": list(outcome.warnings),
        }
        _emit(as_json, data, lines)

    return command


def _optional_forge(kind: str, url: str, repository: str) -> Forge | None:
    """The forge a rollback closes stale promotion pull requests on: only when --forge-repo and the
    token are given (a rollback never fails for want of a forge; it warns about open promotions)."""
    if not repository or not os.environ.get(envvars.FORGE_TOKEN):
        return None
    return make_forge(kind, repository, url)


rollback = _rollback_command(
    "rollback",
    "Break-glass: give stable 100% on the stacks in ONE commit straight to main, then apply it.\n\n"
    "Already rolled back is a no-op in git (the apply still runs with --apply). With a forge "
    "(--forge-repo and the token), the stacks' open promotion pull requests are closed with a comment "
    "linking the rollback commit, and their branches deleted.",
)
abort = _rollback_command(
    "abort",
    "A rollback that also pauses: stable 100% and `paused: true` in ONE commit on main, then apply.\n\n"
    "No promotion run resumes the stack until `rollout resume`; then `rollout retry` restarts the stage "
    "or `rollout release start` begins a fixed version. Stale promotion pull requests are closed as "
    "by `rollout rollback`.",
)


StateChange = Callable[..., Any]  # GitOps.pause/resume/retry/release_start/release_finalize


def _state_command(
    name: str, summary: str, change: StateChange, *, reason_required: bool = False, version: bool = False
) -> click.Command:
    """`rollout pause|resume|retry` and `rollout release start|finalize`: ONE commit on main per run,
    with its reason, like a rollback. ``change`` is the GitOps method that decides and writes it."""
    verb = name.replace("-", " ")

    @click.command(name.removeprefix("release-"), help=summary)
    @_common
    @click.option(
        "--reason",
        help=f"Why: goes into the {verb} commit and Slack.",
        **({"required": True} if reason_required else {"default": ""}),  # click: a default satisfies required
    )
    @click.option("--now", "now_text", default=None, help="When, ISO 8601 with zone (default: the clock).")
    @click.option("--dry-run", is_flag=True, help="Show which stacks would change; write nothing.")
    @click.option("--actor", default=None, help="Who, for the audit trail (default: $GITHUB_ACTOR@host).")
    def command(
        plan_path: Path,
        repo_dir: Path,
        config_dir: str,
        remote: str,
        main_branch: str,
        stacks: tuple[str, ...],
        as_json: bool,
        reason: str,
        now_text: str | None,
        dry_run: bool,
        actor: str | None,
        version: str | None = None,
    ) -> None:
        now = _now(now_text)
        if not stacks:
            raise UserError(f"--stack: name the stacks to {verb} (a {verb} never guesses)")
        plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
        ops = GitOps(
            repo=repo,
            plan=plan,
            config_dir=config_dir,
            notifier=Notifier(plan.notifications),
            actor=actor or default_actor(),
        )
        extra = {"version": version or ""} if version is not None else {}
        outcome = change(ops, stacks, reason=reason, now=now, dry_run=dry_run, **extra)
        data = {
            "stacks": list(outcome.stacks),
            "changed": list(outcome.changed),
            "result": outcome.result,
            "message": outcome.message,
            "commit": outcome.commit,
            "warnings": list(outcome.warnings),
        }
        lines = [f"{outcome.result}: {outcome.message}"] + [f"    warning: {w}" for w in outcome.warnings]
        _emit(as_json, data, lines)

    if version:
        command = click.option("--version", "version", required=True, help="The new candidate version.")(
            command
        )
    return command


@click.group("release")
def release() -> None:
    """Begin and end a release: `start` the next version, `finalize` the one at 100%."""


release.add_command(
    _state_command(
        "release-start",
        "Start the next release: ONE commit on main. Only on a finalized or rolled-back stack.\n\n"
        "What serves every user becomes stable (after `finalize` the colours swap), --version becomes "
        "the candidate on the other colour, at the first stage's step 0 and its weight.",
        GitOps.release_start,
        version=True,
    )
)
release.add_command(
    _state_command(
        "release-finalize",
        "Record the release as finished (`released: true`) at the last step with 100% candidate: ONE "
        "commit on main, traffic unchanged. `release start` needs it (or a rollback).",
        GitOps.release_finalize,
    )
)
retry = _state_command(
    "retry",
    "After a rollback, restart the stage from its first step: ONE commit on main.\n\n"
    "Refused unless the stack is rolled back and not paused (`rollout resume` an aborted stack first).",
    GitOps.retry,
)


pause = _state_command(
    "pause",
    "Hold the stacks' promotions until `rollout resume`: ONE commit on main with the reason.\n\n"
    "The scheduled `rollout promote` then holds them with reason paused; traffic is not touched, and "
    "a needed rollback still happens.",
    GitOps.pause,
    reason_required=True,
)
resume = _state_command(
    "resume",
    "Let `rollout promote` decide for paused stacks again: ONE commit on main with the reason.",
    GitOps.resume,
    reason_required=True,
)


def _pending_apply_line(commit: str | None) -> list[str]:
    if not commit:
        return []
    return [f"    pending apply: {commit[:12]} (`rollout rollback --apply` finishes it)"]


@click.command("status")
@_common
@click.option(
    "--live",
    type=click.Choice(sorted(LIVE_STATES)),
    default="none",
    show_default=True,
    help="Where live weights come from, for drift ('none': drift is unknown).",
)
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C (with --json: one JSON line per refresh).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N refreshes (--watch).")
@click.option(
    "--gates",
    "with_gates",
    is_flag=True,
    help="Also each gate's verdict now, decided as `promote` decides (from --metrics-file, else the "
    "live providers); without it gates show 'not evaluated'.",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --gates: measurements standing in for live providers (the `rollout evaluate` format).",
)
@click.option("--now", "now_text", default=None, help="The time to measure clocks from (default: the clock).")
def status(
    plan_path: Path,
    repo_dir: Path,
    config_dir: str,
    remote: str,
    main_branch: str,
    stacks: tuple[str, ...],
    as_json: bool,
    live: str,
    watch: bool,
    interval: float,
    count: int | None,
    with_gates: bool,
    metrics_file: Path | None,
    now_text: str | None,
) -> None:
    """Per stack: stage, step, versions, weights, since when, last decision and its commit, drift,
    the time the clocks still hold the next promotion, and with --live kubernetes each colour's
    Deployment and HPA replicas; with --gates, each gate's verdict now.

    With --watch, per stack and region, refreshed: stage and step, weights in git and in the cluster
    (or why the cluster's are unknown), drift and the last decision.
    """
    if count is not None and not watch:
        raise UserError("--count: only with --watch")
    if metrics_file is not None and not with_gates:
        raise UserError("--metrics-file: only with --gates")
    if now_text is not None and watch:
        raise UserError("--now: not with --watch (each refresh reads the clock)")
    plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
    ops = GitOps(repo=repo, plan=plan, config_dir=config_dir)
    project = repo_dir / config_dir
    live_state = make_live_state(live, project, plan.service)

    def rows_at(now: datetime) -> list[dict[str, Any]]:
        evidence_for = (
            _evidence_source(plan, metrics_file, (), now, drill_reports=repo_dir / DRILL_REPORTS)
            if with_gates
            else None
        )
        return [
            _status_row(item, project, plan, now, evidence_for, read_workloads(live_state, item.stack))
            for item in ops.status(stacks, live_state)
        ]

    if not watch:
        rows = rows_at(_now(now_text))
        _emit(as_json, rows, [line for row in rows for line in _status_lines(row)])
        return
    refreshes = 0
    try:
        while True:
            now = datetime.now(UTC)
            rows = rows_at(now)
            refreshes += 1
            if as_json:
                click.echo(json.dumps({"refreshed_at": _iso(now), "stacks": rows}, default=str))
            else:
                _draw_watch(rows, now, interval)
            if count is not None and refreshes >= count:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _region(project: Path, stack: str) -> str | None:
    try:
        region = read_config(project / config_name(stack)).get("markethub-rollout:region")
    except UserError:
        return None
    return str(region) if region else None


def _next_promotion(plan: Plan, s: RolloutState, now: datetime) -> dict[str, Any]:
    """When the clocks let the stack be promoted next (bake, and min_duration at the stage's last
    step); a paused, rolled-back or released stack has no next promotion until a person acts."""
    if s.paused:
        return {"in_seconds": None, "at": None, "note": "paused: `rollout resume` first"}
    if s.rolled_back:
        return {"in_seconds": None, "at": None, "note": "rolled back: `rollout retry` first"}
    if s.released:
        return {"in_seconds": None, "at": None, "note": "released: `rollout release start` begins the next"}
    try:
        wait = time_to_promotion(
            plan,
            s.stage,
            s.step,
            now=now,
            stage_started_at=s.stage_started_at,
            step_started_at=s.step_started_at,
        )
    except UserError as err:
        return {"in_seconds": None, "at": None, "note": str(err)}
    note = "clocks done; the gates decide" if not wait else "clocks hold it; then the gates decide"
    return {"in_seconds": int(wait.total_seconds()), "at": _iso(now + wait), "note": note}


def _gate_verdicts(
    plan: Plan, s: RolloutState, now: datetime, evidence_for: Callable[[RolloutState], Evidence] | None
) -> dict[str, Any]:
    """Each gate's verdict now, decided as `promote` decides (no comparison memory: the same result)."""
    if evidence_for is None:
        return {"decision": None, "gates": None, "why": "not evaluated: --gates not asked"}
    from rollout_policies.core import decide

    try:
        decision = decide(
            plan,
            s.stage,
            s.step,
            evidence_for(s),
            now=now,
            stage_started_at=s.stage_started_at,
            step_started_at=s.step_started_at,
        )
    except UserError as err:
        return {"decision": None, "gates": None, "why": f"not evaluated: {err}"}
    gates = [
        {"metric": g.metric, "name": g.name, "verdict": g.verdict.value, "value": g.value, "unit": g.unit}
        for g in decision.gates
    ]
    return {"decision": decision.action.value, "gates": gates, "why": None}


def _status_row(
    item: StackStatus,
    project: Path,
    plan: Plan,
    now: datetime,
    evidence_for: Callable[[RolloutState], Evidence] | None,
    workloads: WorkloadsReading,
) -> dict[str, Any]:
    s = item.state
    verdicts = _gate_verdicts(plan, s, now, evidence_for)
    return {
        "stack": item.stack,
        "region": _region(project, item.stack),
        "stage": s.stage,
        "step": s.step,
        "stable": {"colour": s.stable.colour.value, "version": s.stable.version},
        "candidate": {"colour": s.candidate.colour.value, "version": s.candidate.version},
        "weights": {c.value: w for c, w in sorted(s.weights.items())},
        "rolled_back": s.rolled_back,
        "paused": s.paused,
        "released": s.released,
        "stage_started_at": s.stage_started_at.isoformat(),
        "step_started_at": s.step_started_at.isoformat(),
        "config_commit": item.commit,
        "last_decision": item.last_decision,
        "last_decision_commit": item.last_decision_commit,
        "last_decision_at": item.last_decision_at,
        "last_decision_by": item.last_decision_by,
        "pending_promotions": list(item.pending),
        "pending_apply": item.pending_apply,
        "live_weights": item.live,
        "live_unknown_why": item.live_unknown_why,
        "drift": item.drift,
        "next_promotion": _next_promotion(plan, s, now),
        "gates": verdicts["gates"],
        "gates_decision": verdicts["decision"],
        "gates_unknown_why": verdicts["why"],
        "workloads": workloads.health,
        "workloads_unknown_why": workloads.why,
    }


def _decision_text(row: dict[str, Any]) -> str:
    if row["last_decision"] and row["last_decision_commit"]:
        return f"{row['last_decision']} in {row['last_decision_commit'][:12]} at {row['last_decision_at']}"
    return "none recorded"


def _weights_text(weights: dict[str, int] | None) -> str:
    return "-" if weights is None else " ".join(f"{colour} {weight}%" for colour, weight in weights.items())


def _next_promotion_text(row: dict[str, Any]) -> str:
    from datetime import timedelta

    from rollout_policies.core.durations import span

    nxt = row["next_promotion"]
    if nxt["in_seconds"] is None:
        return str(nxt["note"])
    if nxt["in_seconds"] == 0:
        return f"now: {nxt['note']}"
    return f"in {span(timedelta(seconds=nxt['in_seconds']))} (at {nxt['at']}): {nxt['note']}"


def _gates_text(row: dict[str, Any]) -> str:
    if row["gates"] is None:
        return str(row["gates_unknown_why"])
    verdicts = ", ".join(f"{gate['metric']} {gate['verdict']}" for gate in row["gates"]) or "no gates"
    return f"{verdicts} (decision now: {row['gates_decision']})"


def _replicas_text(health: dict[str, Any]) -> str:
    if "why" in health:
        return f"unknown ({health['why']})"
    mark = "" if health["healthy"] else " NOT HEALTHY"
    if "ready" in health:
        return f"{health['ready']}/{health['desired']} ready{mark}"
    return f"{health['current']}/{health['desired']} (min {health['min']}, max {health['max']}){mark}"


def _workloads_text(row: dict[str, Any]) -> str:
    if row["workloads"] is None:
        return f"unknown ({row['workloads_unknown_why']})"
    return "; ".join(
        f"{colour}: deployment {_replicas_text(kinds['deployment'])}, hpa {_replicas_text(kinds['hpa'])}"
        for colour, kinds in row["workloads"].items()
    )


def _status_lines(row: dict[str, Any]) -> list[str]:
    candidate, stable = row["candidate"], row["stable"]
    live = row["live_weights"]
    return [
        f"{row['stack']}: {row['stage']} step {row['step']}, candidate {candidate['version']} "
        f"({candidate['colour']}) {row['weights'][candidate['colour']]}%, "
        f"stable {stable['version']} ({stable['colour']})"
        + (" (rolled back: no cohort route, stable flags)" if row["rolled_back"] else "")
        + (" (paused: promotions hold until `rollout resume`)" if row["paused"] else "")
        + (" (released: `rollout release start` begins the next)" if row["released"] else ""),
        f"    since: stage {row['stage_started_at']}, step {row['step_started_at']}",
        f"    last decision: {_decision_text(row)}",
        f"    pending promotions: {', '.join(row['pending_promotions']) or 'none'}",
        *_pending_apply_line(row["pending_apply"]),
        f"    drift: {row['drift']}"
        + (f" (live {live})" if live is not None else f" ({row['live_unknown_why']})"),
        f"    workloads: {_workloads_text(row)}",
        f"    next promotion: {_next_promotion_text(row)}",
        f"    gates: {_gates_text(row)}",
    ]


def _draw_watch(rows: list[dict[str, Any]], now: datetime, interval: float) -> None:
    from rollout_policies.cli.tables import Table, echo

    table = Table(
        (
            "stack",
            "region",
            "stage",
            "step",
            "candidate",
            "git weights",
            "live weights",
            "drift",
            "next promotion",
            "last decision",
        ),
        [
            (
                row["stack"],
                row["region"] or "-",
                row["stage"]
                + (" (rolled back)" if row["rolled_back"] else "")
                + (" (paused)" if row["paused"] else ""),
                str(row["step"]),
                f"{row['candidate']['version']} ({row['candidate']['colour']})",
                _weights_text(row["weights"]),
                _weights_text(row["live_weights"]),
                row["drift"],
                _next_promotion_text(row),
                _decision_text(row),
            )
            for row in rows
        ],
    )
    health = [f"{row['stack']}: workloads: {_workloads_text(row)}" for row in rows]
    verdicts = [f"{row['stack']}: gates: {_gates_text(row)}" for row in rows]
    unknown = [
        f"{row['stack']}: live weights unknown: {row['live_unknown_why']}"
        for row in rows
        if row["live_weights"] is None
    ]
    pending = [
        f"{row['stack']}: pending promotions: {', '.join(row['pending_promotions'])}"
        for row in rows
        if row["pending_promotions"]
    ]
    echo(
        [
            f"rollout status: refreshed {_iso(now)}, every {interval:g}s (Ctrl-C stops)",
            "",
            table,
            *unknown,
            *health,
            *verdicts,
            *pending,
        ],
        clear=True,
    )
