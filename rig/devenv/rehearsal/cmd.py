"""`rollout rehearse`: the whole plan on the local environment, with faults, and a report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

DEFAULT_SCALE = 10080.0  # a calendar week per wall minute: ten weeks in ten minutes
# Fault responses at real time: the scrape, webhook and apply cannot be compressed.
DEFAULT_RESPONSE_SCALE = 1.0


@click.command("rehearse")
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    show_default="the shipped markethub-mobile plan",
    help="Plan file to rehearse.",
)
@click.option("--faults", "faults_spec", default=None, help="STAGE[@STEP]+OFFSET:KIND[:REGION],... or none.")
@click.option("--scale", type=float, default=DEFAULT_SCALE, show_default=True, help="Calendar time divisor.")
@click.option(
    "--response-scale",
    type=float,
    default=DEFAULT_RESPONSE_SCALE,
    show_default=True,
    help="Divisor of fault-response windows (trigger windows, rollback objectives).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("rehearsal-report"),
    show_default=True,
    help="Folder for report.html, report.json and the run's files.",
)
@click.option(
    "--interval",
    type=float,
    default=4.0,
    show_default=True,
    help="Wall seconds between scheduled promotions.",
)
@click.option(
    "--signoffs",
    "signoff_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The person's sign-offs (YAML list of manual criterion ids; default: all signed).",
)
@click.option("--keep", is_flag=True, help="Leave the deployments and the rollout repository.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The local environment's folder (default: .local/env).",
)
def rehearse(
    plan_path: Path | None,
    faults_spec: str | None,
    scale: float,
    response_scale: float,
    report_dir: Path,
    interval: float,
    signoff_file: Path | None,
    keep: bool,
    state_dir: Path | None,
) -> None:
    """Run the whole plan, beta to 100% in both regions, through the shipped wiring, with faults.

    Exit status 0 when the rehearsal passes, 1 when it ran and failed (the report says why),
    2 for bad input or an environment that is not running.
    """
    from devenv.local import LocalEnvironment
    from devenv.rehearsal.faults import DEFAULT_SPEC, parse_faults
    from devenv.rehearsal.report import write_report
    from devenv.rehearsal.run import STACKS, Options, Rehearsal
    from devenv.rehearsal.scale import Scales
    from rollout_policies.errors import UserError
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

    plan_file = plan_path or DEFAULT_PLAN
    try:
        scales = Scales(scale, response_scale)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    if interval <= 0:
        raise click.UsageError("--interval: must be above zero")
    plan = load_plan(plan_file)
    faults = parse_faults(DEFAULT_SPEC if faults_spec is None else faults_spec, plan, tuple(STACKS.values()))
    environment = LocalEnvironment(state_dir)
    info = environment.load()
    if info is None or not all(c.running for c in environment.status(info)):
        raise UserError(
            f"the local environment in {environment.state_dir} is not running (run `rollout env up`)"
        )
    report_dir = report_dir.resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    options = Options(
        plan_file, scales, report_dir, faults, interval=interval, signoff_file=signoff_file, keep=keep
    )
    record = Rehearsal(info, options).run()
    html, data = write_report(record, plan, report_dir)
    click.echo(f"\n{record.verdict}: {'; '.join(record.failures) or 'every check held'}")
    click.echo(f"report: {html}\n        {data}")
    sys.exit(0 if record.verdict == "PASS" else 1)
