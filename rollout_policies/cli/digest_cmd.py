"""``rollout digest``: the daily stand-up digest or the weekly executive report, to files and Slack."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rollout_policies.cli.gitops_cmd import _evidence_source, _now, open_repository, repository_options
from rollout_policies.errors import UserError

# Where `rollout drill --push-to` commits drill reports in the rollout repository (runbooks.report).
DRILL_REPORTS = "reports/drills"


@click.command("digest")
@repository_options
@click.option(
    "--period",
    type=click.Choice(["daily", "weekly"]),
    default="daily",
    show_default=True,
    help="daily: the stand-up digest of the last day; weekly: the executive report of the last 7 days.",
)
@click.option("--now", "now_text", default=None, help="The end of the period, ISO 8601 (default: the clock).")
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Measurements standing in for live providers, for the KPIs (the `rollout evaluate` format).",
)
@click.option(
    "--drill-reports",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=f"Folder of drill reports, <drill>/<time>.json (default: <repo>/{DRILL_REPORTS}).",
)
@click.option(
    "--out",
    "outputs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the digest here: Markdown for .md, an HTML page for .html (repeatable).",
)
@click.option("--slack", is_flag=True, help="Post it to the plan's Slack webhook too.")
@click.option("--json", "as_json", is_flag=True, help="Print the digest's data as JSON.")
def digest(
    plan_path: Path,
    repo_dir: Path,
    config_dir: str,
    remote: str,
    main_branch: str,
    stacks: tuple[str, ...],
    period: str,
    now_text: str | None,
    metrics_file: Path | None,
    drill_reports: Path | None,
    outputs: tuple[Path, ...],
    slack: bool,
    as_json: bool,
) -> None:
    """KPIs against targets, decisions, incidents, risks and what is due in the next 7 days.

    Reads git (the decisions' commits on main), the plan, the drill reports, and one evaluation of
    each stack's gates (live providers, or --metrics-file). Local stacks are left out unless named.
    """
    from rollout_policies.gitops import digest as build
    from rollout_policies.gitops.engine import GitOps
    from rollout_policies.gitops.notify import Notifier
    from rollout_policies.gitops.stack_config import config_name, stack_environment

    for path in outputs:
        if path.suffix not in (".md", ".html"):
            raise UserError(f"--out {path}: write .md (Markdown) or .html (a page)")
    now = _now(now_text)
    named = bool(stacks)
    plan, repo, stacks = open_repository(plan_path, repo_dir, config_dir, remote, main_branch, stacks)
    if not named:
        stacks = (
            tuple(s for s in stacks if stack_environment(repo_dir / config_dir / config_name(s)) != "local")
            or stacks
        )
    ops = GitOps(repo=repo, plan=plan, config_dir=config_dir)
    sources = build.Sources(
        ops=ops,
        evidence_for=_evidence_source(
            plan, metrics_file, (), now, drill_reports=drill_reports or repo_dir / DRILL_REPORTS
        ),
        drill_reports=drill_reports or repo_dir / DRILL_REPORTS,
    )
    data = build.gather(sources, stacks, period=build.Period(period), now=now)
    text = build.markdown(data)
    for path in outputs:
        if path.suffix == ".md":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        else:
            from rollout_policies.pages import digest as page

            page.write(data, path)
        click.echo(f"digest: {path}", err=True)
    if slack:
        notifier = Notifier(plan.notifications)
        if not notifier.posts:
            raise UserError(
                f"--slack: {plan.notifications.slack_webhook_env or 'no webhook variable'} is not set"
            )
        for warning in notifier.post_text(*build.slack_lines(data)):
            click.echo(f"warning: {warning}", err=True)
    click.echo(json.dumps(data, indent=2) if as_json else text.rstrip("\n"))
