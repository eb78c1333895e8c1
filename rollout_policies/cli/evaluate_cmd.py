"""``rollout evaluate``: judge a stage's gates from live providers or a metrics file, and decide."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import click

from rollout_policies.cli.tables import Table, echo
from rollout_policies.core.decision import Action, decide
from rollout_policies.core.report import decision_as_dict, report_blocks
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import UnknownStage
from rollout_policies.providers import PROVIDERS, MetricsFileProvider, collect_evidence
from rollout_policies.providers.drill_reports import DRILL_REPORTS, read_drill_results

# `evaluate --exit-code`: the decision as the exit status. 2 is click's and ours for bad input.
EXIT_CODES: dict[Action, int] = {Action.PROMOTE: 0, Action.HOLD: 1, Action.ROLLBACK: 3}


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"{flag}: not a time: {value!r} (write 2026-11-20T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise UserError(f"{flag}: {value} needs a time zone (write it as ...Z)")
    return moment


def complete_stages(ctx: click.Context, incomplete: str) -> list[str]:
    """Shell completion of --stage: the stage ids of --plan (nothing when the plan does not load)."""
    try:
        plan = load_plan(Path(ctx.params.get("plan_path") or DEFAULT_PLAN))
    except UserError:
        return []
    return [stage.id for stage in plan.stages if stage.id.startswith(incomplete)]


@click.command("evaluate")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_PLAN,
    show_default="the shipped markethub-mobile plan",
    help="Plan file.",
)
@click.option(
    "--stage",
    "stage_id",
    required=True,
    shell_complete=lambda ctx, param, incomplete: complete_stages(ctx, incomplete),
    help="Stage id to evaluate (beta, limited, ...).",
)
@click.option(
    "--step",
    type=int,
    default=None,
    help="Traffic step index within the stage (default: the last step, i.e. judge leaving the stage).",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML/JSON measurements standing in for live providers (see docs/decisions.md).",
)
@click.option(
    "--now", "now_text", default=None, help="Evaluation time, ISO 8601 with zone (default: the clock)."
)
@click.option(
    "--stage-started",
    "stage_started_text",
    default=None,
    help="When the stage began (default: stage_started_at in the metrics file).",
)
@click.option(
    "--step-started",
    "step_started_text",
    default=None,
    help="When the step began (default: step_started_at in the metrics file, else the stage start).",
)
@click.option(
    "--signoff",
    "signoffs",
    multiple=True,
    help="A manual criterion id that has been signed off (repeatable; adds to the metrics file's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts and decision as JSON.")
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit with the decision: 0 promote, 1 hold, 3 rollback (2 stays bad input), for scripts.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the gate report with plots: this HTML page and its data beside it (.json).",
)
@click.option(
    "--points",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="--html: at most this many instants of the stage, replayed from the evidence.",
)
@click.option(
    "--drill-reports",
    type=click.Path(path_type=Path, file_okay=False),
    default=DRILL_REPORTS,
    show_default=True,
    help="Folder of the committed drill reports (<drill>/<time>.json), for drill criteria.",
)
def evaluate(
    plan_path: Path,
    stage_id: str,
    step: int | None,
    metrics_file: Path | None,
    now_text: str | None,
    stage_started_text: str | None,
    step_started_text: str | None,
    signoffs: tuple[str, ...],
    as_json: bool,
    exit_code: bool,
    html_path: Path | None,
    points: int,
    drill_reports: Path,
) -> None:
    """Print each gate's verdict and the stage decision (promote, hold or rollback) with its reasons.

    The exit status is 0 whatever the decision, unless --exit-code; 2 for bad input.
    """
    plan = load_plan(plan_path, providers=tuple(PROVIDERS))
    try:
        stage = plan.stage(stage_id)
    except UnknownStage as err:
        raise UserError(f"--stage: {err}") from None
    if step is None:
        step = len(stage.steps) - 1
    elif not 0 <= step < len(stage.steps):
        raise UserError(f"--step: stage {stage.id} has steps 0..{len(stage.steps) - 1}, not {step}")
    now = _time(now_text, "--now") or datetime.now(UTC)

    if metrics_file is not None:
        from_file = MetricsFileProvider(path=metrics_file, now=now)
        evidence = dataclasses.replace(
            from_file.evidence(plan, signoffs), drills=read_drill_results(drill_reports)
        )
        stage_started = _time(stage_started_text, "--stage-started") or from_file.file().stage_started_at
        step_started = _time(step_started_text, "--step-started") or from_file.file().step_started_at
    else:
        stage_started = _time(stage_started_text, "--stage-started")
        step_started = _time(step_started_text, "--step-started")
        if stage_started is not None:  # without it the error below comes before any query
            # comparison gates: per-version counts since the stage started, from Prometheus
            evidence = collect_evidence(
                plan, stage.id, now, since=stage_started, signoffs=signoffs, drill_reports=drill_reports
            )
    if stage_started is None:
        raise UserError("--stage-started: required (or stage_started_at in the metrics file)")

    decision = decide(
        plan,
        stage.id,
        step,
        evidence,
        now=now,
        stage_started_at=stage_started,
        step_started_at=step_started or stage_started,
    )
    if html_path is not None:
        from rollout_policies.pages import gates

        history = gates.replay(
            plan,
            stage.id,
            step,
            evidence,
            now=now,
            stage_started_at=stage_started,
            step_started_at=step_started or stage_started,
            points=points,
        )[:-1]
        page, _ = gates.write(html_path, (*history, decision), plan=plan.name)
        click.echo(f"gate report: {page}", err=True)
    if as_json:
        click.echo(json.dumps(decision_as_dict(decision, plan=plan.name), indent=2))
    else:
        blocks = report_blocks(decision, plan=plan.name)
        echo(block if isinstance(block, str) else Table(*block) for block in blocks)
    if exit_code:
        raise click.exceptions.Exit(EXIT_CODES[decision.action])
