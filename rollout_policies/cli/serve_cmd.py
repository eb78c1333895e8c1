"""``rollout serve`` (Alertmanager webhook receiver) and ``rollout watch`` (polling fallback): wiring."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from rollout_policies import envvars
from rollout_policies.cli.gitops_cmd import forge_options, open_repository, repository_options
from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import GitOps, default_actor
from rollout_policies.gitops.forge import make_forge
from rollout_policies.gitops.notify import Notifier
from rollout_policies.gitops.repo import clone
from rollout_policies.gitops.seams import PRODUCTION_APPLIERS, applier_names, make_applier, pulumi_binary
from rollout_policies.gitops.stack_config import config_name
from rollout_policies.plan.model import parse_duration


def _listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UserError(f"--listen {text!r}: write it as HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def _token(variable: str) -> str:
    token = os.environ.get(variable, "").strip()
    if not token:
        raise UserError(
            f"--token-env {variable}: the variable is not set or empty (it holds the shared token)"
        )
    if len(token) < 16:
        raise UserError(f"--token-env {variable}: the token is shorter than 16 characters")
    return token


def _seconds(text: str, flag: str) -> float:
    try:
        value = parse_duration(text).total_seconds()
    except ValueError as err:
        raise UserError(f"{flag} {text!r}: {err}") from None
    if value <= 0:
        raise UserError(f"{flag} {text!r}: must be above zero")
    return value


@dataclass(frozen=True)
class GitRollbackOptions:
    """The options `serve` and `watch` share: the plan, the repository and its stacks, how a
    rollback is committed and applied, and the log level. ``@_git_options`` hands them to the
    command as one ``git`` argument."""

    plan_path: Path
    repo_dir: Path
    config_dir: str
    remote: str
    main_branch: str
    stacks: tuple[str, ...]
    apply_now: bool
    applier: str
    actor: str | None
    clone_from: str | None
    forge_kind: str
    forge_repo: str
    forge_url: str
    log_level: str


_GIT_OPTION_NAMES = tuple(f.name for f in fields(GitRollbackOptions))


def _git_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--apply/--no-apply",
            "apply_now",
            default=True,
            show_default=True,
            help="Apply the traffic resources after the rollback commit.",
        ),
        click.option(
            "--applier",
            type=click.Choice(applier_names()),
            default="pulumi",
            show_default=True,
            help="How the apply reaches the cluster (as for `rollout rollback --applier`).",
        ),
        click.option("--actor", default=None, help="Who rolls back, for the audit trail."),
        click.option(
            "--clone-from",
            "clone_from",
            default=None,
            metavar="URL",
            help="Clone this repository into --repo first when --repo is not a clone yet (a pod's "
            f"empty volume); https credentials come from ${envvars.GIT_TOKEN}.",
        ),
        forge_options(
            repo_help="owner/name on GitHub: a rollback then marks the stack's open promotion pull "
            "requests stale (token from $GITHUB_TOKEN). Empty: no forge."
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning"]),
            default="info",
            show_default=True,
            help="Log detail (logs go to stderr).",
        ),
    ]

    @functools.wraps(command)
    def gathered(**values: Any) -> Any:
        git = GitRollbackOptions(**{name: values.pop(name) for name in _GIT_OPTION_NAMES})
        return command(git=git, **values)

    for option in reversed(options):
        gathered = option(gathered)
    return repository_options(gathered)


def _prepare(repo_dir: Path, clone_from: str | None, main_branch: str, apply_now: bool, applier: str) -> None:
    """Found out at start, not at the first alert in the middle of an incident: the clone, the CLI."""
    if clone_from and not (repo_dir / ".git").exists():
        if repo_dir.exists() and any(repo_dir.iterdir()):
            raise UserError(f"--repo {repo_dir}: not empty and not a git clone, so --clone-from cannot clone")
        repo_dir.parent.mkdir(parents=True, exist_ok=True)
        clone(clone_from, repo_dir, branch=main_branch)
    if apply_now and applier in PRODUCTION_APPLIERS:
        pulumi_binary()


def _rollback(git: GitRollbackOptions) -> tuple[Any, tuple[str, ...], Any]:
    from rollout_policies.alerting import GitRollback

    _prepare(git.repo_dir, git.clone_from, git.main_branch, git.apply_now, git.applier)
    plan, repo, stacks = open_repository(
        git.plan_path, git.repo_dir, git.config_dir, git.remote, git.main_branch, git.stacks
    )
    config_dir = git.repo_dir / git.config_dir
    for stack in stacks:
        # Found out at start, not at the first alert in the middle of an incident.
        if not (config_dir / config_name(stack)).is_file():
            raise UserError(f"--stack {stack}: {config_name(stack)} is not in --repo {config_dir}")
    ops = GitOps(
        repo=repo,
        plan=plan,
        config_dir=git.config_dir,
        notifier=Notifier(plan.notifications),
        actor=git.actor or f"rollout-automatic/{default_actor()}",
        forge=make_forge(git.forge_kind, git.forge_repo, git.forge_url) if git.forge_repo else None,
    )
    chosen = make_applier(git.applier, config_dir) if git.apply_now else None
    return plan, stacks, GitRollback(ops, chosen)


def _ready_to_roll_back(git: GitRollbackOptions) -> tuple[Any, tuple[str, ...], Any]:
    """What `serve` and `watch` do before they listen: the rollback from the options (the clone and
    the Pulumi CLI checked at start), logging, then any rollback a crash left half applied."""
    plan, stacks, rollback = _rollback(git)
    _logging(git.log_level)
    _finish_pending(rollback, stacks)
    return plan, stacks, rollback


def _finish_pending(rollback: Any, stacks: tuple[str, ...]) -> None:
    """A rollback killed between its push and its apply left a record: apply it before serving."""
    if rollback.applier is None:
        return
    try:
        rollback.ops.finish_pending_applies(rollback.applier, stacks)
    except UserError as err:
        # Serving matters more: the next alert's rollback applies again (and clears the record).
        logging.getLogger("rollout.gitops").error("pending apply not finished: %s", err)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request to Prometheus would bury the decisions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn's start and stop chatter; its warnings (a malformed request, the connection cap) stay.
    logging.getLogger("uvicorn.error").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


@click.command("serve")
@_git_options
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on (port 0: any)."
)
@click.option(
    "--token-env",
    default=envvars.WEBHOOK_TOKEN,
    show_default=True,
    help="The variable holding the shared bearer token Alertmanager sends.",
)
@click.option(
    "--dedup-ttl",
    default="6h",
    show_default=True,
    help="How long a handled notification is remembered (above Alertmanager's repeat_interval).",
)
@click.option("--skew", default="30s", show_default=True, help="Clock difference tolerated in replay checks.")
@click.option(
    "--max-age",
    default="30m",
    show_default=True,
    help="A firing alert that started longer ago than this is refused as a replay.",
)
@click.option(
    "--collect-interval",
    default="15s",
    show_default=True,
    help="How often the plan's non-Prometheus metrics are measured and exported at /metrics "
    "(providers configured by the ROLLOUT_* variables); 0 turns collection off.",
)
@click.option(
    "--header-timeout",
    default="10s",
    show_default=True,
    help="A request's line and headers must arrive within this (408 and closed after).",
)
@click.option(
    "--body-timeout", default="10s", show_default=True, help="A request's body must arrive within this."
)
@click.option(
    "--idle-timeout", default="5s", show_default=True, help="An idle keep-alive connection closes after this."
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Connections and requests served at once; beyond it, 503.",
)
def serve(
    git: GitRollbackOptions,
    listen: str,
    token_env: str,
    dedup_ttl: str,
    skew: str,
    max_age: str,
    collect_interval: str,
    header_timeout: str,
    body_timeout: str,
    idle_timeout: str,
    max_connections: int,
) -> None:
    """Receive Alertmanager webhooks; roll back the stacks of firing rollback-trigger alerts.

    POST /alerts (or /webhook) with `Authorization: Bearer <token>`; GET /healthz and /metrics,
    which also exports the measurements the alert rules read (docs/alerting.md).
    Served by uvicorn; SIGTERM stops accepting and lets a rollback in flight finish.
    """
    from datetime import timedelta

    from rollout_policies.alerting import (
        Deduplicator,
        ReceiverMetrics,
        RunningReceiver,
        ServerLimits,
        WebhookReceiver,
    )
    from rollout_policies.alerting.collector import start_collection

    host, port = _listen(listen)
    token = _token(token_env)
    ttl = _seconds(dedup_ttl, "--dedup-ttl")
    skew_seconds = _seconds(skew, "--skew")
    max_age_seconds = _seconds(max_age, "--max-age")
    collect_seconds = (
        0.0 if collect_interval.strip() == "0" else _seconds(collect_interval, "--collect-interval")
    )
    limits = ServerLimits(
        header_timeout=_seconds(header_timeout, "--header-timeout"),
        body_timeout=_seconds(body_timeout, "--body-timeout"),
        idle_timeout=_seconds(idle_timeout, "--idle-timeout"),
        max_connections=max_connections,
    )
    plan, stacks, rollback = _ready_to_roll_back(git)
    metrics = ReceiverMetrics()
    stop_collecting = threading.Event()
    collector = (
        start_collection(plan, metrics.registry, timedelta(seconds=collect_seconds), stop_collecting)
        if collect_seconds
        else None
    )
    receiver = WebhookReceiver(
        plan,
        rollback,
        token,
        allowed_stacks=frozenset(stacks),
        skew=timedelta(seconds=skew_seconds),
        max_age=timedelta(seconds=max_age_seconds),
        dedup=Deduplicator(ttl=ttl),
        notifier=Notifier(plan.notifications),
        metrics=metrics,
    )
    try:
        running = RunningReceiver(receiver, host, port, limits)
    except OSError as err:
        raise UserError(f"--listen {listen}: {err.strerror or err}") from None
    # uvicorn catches SIGTERM (systemd, Kubernetes) and Ctrl-C itself once it runs, finishes the
    # requests in flight, then raises the signal again with the handler found before it. This one
    # covers a SIGTERM before uvicorn's, and makes the raise after it a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: setattr(running.server, "should_exit", True))
    click.echo(f"rollout serve: listening on {running.url} for stacks {', '.join(stacks)}", err=True)
    sys.stderr.flush()
    try:
        running.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop_collecting.set()
        if collector is not None:
            collector.join()
        running.socket.close()


@click.command("watch")
@_git_options
@click.option(
    "--prometheus",
    "prometheus_url",
    default=lambda: os.environ.get(envvars.PROMETHEUS_URL, ""),
    show_default=f"${envvars.PROMETHEUS_URL}",
    help="Prometheus server URL.",
)
@click.option("--interval", default="5s", show_default=True, help="Time between evaluations.")
@click.option("--once", is_flag=True, help="Evaluate once (history from a range query) and exit.")
@click.option(
    "--max-ticks", type=click.IntRange(min=1), default=None, help="Stop after this many evaluations."
)
def watch(
    git: GitRollbackOptions,
    prometheus_url: str,
    interval: str,
    once: bool,
    max_ticks: int | None,
) -> None:
    """Poll Prometheus, evaluate the plan's rollback triggers, and roll back when one fires.

    The fallback when Alertmanager is not in the path. Exit status 0; 3 with --once when it rolled back.
    """
    from datetime import timedelta

    from rollout_policies.alerting import TriggerWatch, WatchTick

    if not prometheus_url:
        raise UserError("--prometheus: give the Prometheus URL (or set ROLLOUT_PROMETHEUS_URL)")
    if not prometheus_url.startswith(("http://", "https://")):
        raise UserError(f"--prometheus {prometheus_url!r}: not an http(s) URL")
    if not git.stacks:
        raise UserError("--stack: name the stacks to watch (a rollback never guesses)")
    step = _seconds(interval, "--interval")
    plan, stacks, rollback = _ready_to_roll_back(git)
    watcher = TriggerWatch(plan, prometheus_url, stacks, rollback, step=timedelta(seconds=step))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def emit(tick: WatchTick) -> None:
        for line in tick.lines():
            click.echo(line)

    try:
        ticks = watcher.run(stop=stop, ticks=1 if once else max_ticks, emit=emit)
    except KeyboardInterrupt:
        return
    if once and ticks and ticks[-1].outcome is not None and ticks[-1].outcome.result == "rolled-back":
        sys.exit(3)
