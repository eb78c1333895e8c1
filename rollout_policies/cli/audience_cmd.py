"""`rollout audience select --stage beta`: choose a stage's cohort and write it as a versioned file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from rollout_policies import envvars
from rollout_policies.core.audience import Cohort, CohortError, select_cohort
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Audience, Plan
from rollout_policies.providers.audience import CANDIDATES_QUERY, fetch_candidates

COHORT_FORMAT = 1


def cohort_document(plan: Plan, stage: str, audience: Audience, cohort: Cohort) -> dict[str, Any]:
    """What is committed: the plan's criteria, the quotas, the achieved mix and pseudonyms only."""
    return {
        "format": COHORT_FORMAT,
        "plan": plan.name,
        "stage": stage,
        "pseudonyms": f"HMAC-SHA256 of the user id, keyed by {envvars.AUDIENCE_SALT} (not in git)",
        "criteria": list(audience.criteria),
        "profile": list(audience.profile),
        "platform_split": audience.platform_split.model_dump() if audience.platform_split else None,
        "quotas": cohort.quotas,
        "achieved": cohort.mix,
        "ids": list(cohort.ids),
    }


@click.group()
def audience() -> None:
    """Audiences: select a stage's cohort from the analytics database."""


@audience.command("select")
@click.option("--stage", "stage_id", required=True, help="Stage whose cohort to select (beta).")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None, help="Plan file.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Default cohorts/STAGE.yaml.")
@click.option(
    "--query", default=CANDIDATES_QUERY, show_default=True, help="SELECT returning the candidate columns."
)
@click.option("--dsn-env", default=envvars.SQL_DSN, show_default=True, help="Variable holding the DSN.")
def select(stage_id: str, plan_path: str | None, out: str | None, query: str, dsn_env: str) -> None:
    """Pick the stage's cohort by the plan's criteria and quotas; write pseudonymous ids and the mix."""
    plan = load_plan(Path(plan_path) if plan_path else DEFAULT_PLAN)
    stage = plan.stage(stage_id)
    salt = os.environ.get(envvars.AUDIENCE_SALT, "")
    if not salt:
        raise CohortError(f"set {envvars.AUDIENCE_SALT}: the secret salt of the cohort's pseudonyms")
    candidates = fetch_candidates(os.environ.get(dsn_env), query=query)
    cohort = select_cohort(stage.audience, candidates, salt, stage=stage.id)
    path = Path(out or f"cohorts/{stage.id}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    document = cohort_document(plan, stage.id, stage.audience, cohort)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    mix = ", ".join(f"{p} {v}%" for p, v in cohort.mix["platform"].items())  # type: ignore[attr-defined]
    click.echo(f"{stage.id}: {len(cohort.ids)} users ({mix}) written to {path}; commit it")
