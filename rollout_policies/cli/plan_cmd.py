"""`rollout plan validate|show`: check a plan file, or print its stages, gates and triggers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from rollout_policies.cli.tables import Table, echo
from rollout_policies.plan.export import human_duration, plan_to_data
from rollout_policies.plan.loader import DEFAULT_PLAN, KNOWN_PROVIDERS, load_plan
from rollout_policies.plan.model import (
    Audience,
    Criterion,
    CriterionKind,
    GateTable,
    Plan,
    Stage,
)


def provider_names() -> tuple[str, ...]:
    """The provider types a plan may name: the providers' registry when it is built, else the plan's list."""
    try:
        from rollout_policies import providers
    except ImportError:  # pragma: no cover - the package always exists, the registry may not yet
        return KNOWN_PROVIDERS
    registry = getattr(providers, "PROVIDERS", None)
    if not isinstance(registry, Mapping) or not registry:
        return KNOWN_PROVIDERS
    # "manual" is not a backend (a person supplies the value), so it is never in the registry.
    return tuple(sorted({*registry, "manual"}))


def _load(plan_path: Path) -> Plan:
    return load_plan(plan_path, providers=provider_names())


_PLAN_ARGUMENT = click.argument(
    "plan_path",
    metavar="[PLAN]",
    required=False,
    default=DEFAULT_PLAN,
    type=click.Path(path_type=Path, dir_okay=True),
)


@click.group("plan")
def plan() -> None:
    """Check or print a rollout plan (default: the shipped markethub-mobile plan)."""


@plan.command("validate")
@_PLAN_ARGUMENT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def validate(plan_path: Path, as_json: bool) -> None:
    """Validate PLAN; print a one-line summary, or the first problem as file:line: field: problem."""
    loaded = _load(plan_path)
    summary = plan_summary(loaded)
    if as_json:
        click.echo(json.dumps({"path": str(plan_path), "valid": True, **summary}, indent=2))
        return
    click.echo(
        f"{plan_path}: OK: plan {loaded.name!r}: {len(loaded.stages)} stages "
        f"({' -> '.join(summary['stages'])}), {summary['metrics']} metrics, "
        f"{summary['gates']} gates ({summary['gating_gates']} gating, "
        f"{summary['monitor_only_gates']} monitor-only), "
        f"{summary['criteria']} go/no-go criteria, {summary['triggers']} rollback triggers"
    )


def plan_summary(plan: Plan) -> dict[str, Any]:
    """What `plan validate` reports: the plan's name and service, its stages in order, and counts."""
    gates = [gate for stage in plan.stages for gate in stage.gates]
    gating = sum(1 for gate in gates if not gate.monitor_only)
    return {
        "plan": plan.name,
        "service": plan.service,
        "stages": [stage.id for stage in plan.stages],
        "metrics": len(plan.metrics),
        "gates": len(gates),
        "gating_gates": gating,
        "monitor_only_gates": len(gates) - gating,
        "criteria": sum(len(stage.go) + len(stage.no_go) for stage in plan.stages),
        "triggers": len(plan.triggers),
    }


@plan.command("show")
@_PLAN_ARGUMENT
@click.option("--json", "as_json", is_flag=True, help="Print the whole normalized plan as JSON.")
def show(plan_path: Path, as_json: bool) -> None:
    """Print PLAN's stages, gates, criteria, rollback triggers and objectives."""
    loaded = _load(plan_path)
    if as_json:
        click.echo(json.dumps(plan_to_data(loaded), indent=2))
        return
    echo(render_plan(loaded))


def render_plan(plan: Plan) -> list[str | Table]:
    """The readable form of a plan: lines of text and tables."""
    lines: list[str | Table] = [f"Plan: {plan.name} (service {plan.service})"]
    lines.append(f"Decision authority: {', '.join(plan.decision_authority)}")
    lines += ["", "Stages", ""]
    lines.append(
        Table(
            ("stage", "audience", "steps (weight% for bake)", "min duration", "rollback within"),
            [
                (
                    stage.id,
                    _audience(stage.audience),
                    " -> ".join(f"{step.weight:g}% for {human_duration(step.bake)}" for step in stage.steps),
                    human_duration(stage.min_duration),
                    human_duration(stage.rollback_objective),
                )
                for stage in plan.stages
            ],
        )
    )
    for stage in plan.stages:
        lines += ["", f"{stage.id}: {stage.name}"]
        lines += [f"  audience: {_audience_detail(stage.audience)}"]
        lines += [f"  features: {_features(stage)}"]
        lines += [f"  gate tables: {', '.join(table.name for table in stage.tables) or 'none'}"]
        for label, criteria in (("go", stage.go), ("no-go", stage.no_go)):
            for criterion in criteria:
                lines.append(
                    f"  {label}: [{criterion.kind.value}] {criterion.text} ({_criterion(criterion)})"
                )

    lines += ["", "Gates", ""]
    rows = []
    for table in _unique_tables(plan):
        stages = [stage.id for stage in plan.stages if any(t.name == table.name for t in stage.tables)]
        for gate in table.gates:
            metric = plan.metric(gate.metric)
            source = metric.source.provider
            rows.append(
                (
                    table.name,
                    metric.name,
                    str(gate.target) if gate.target else "-",
                    str(gate.alert) if gate.alert else "-",
                    metric.unit or "-",
                    source,
                    "yes" if gate.monitor_only else "no",
                    human_duration(metric.evaluable_after) if metric.evaluable_after else "-",
                    ", ".join(stages),
                    gate.note,
                )
            )
    lines.append(
        Table(
            ("table", "metric", "target", "alert", "unit", "source", "monitor", "after", "stages", "note"),
            rows,
        )
    )

    lines += ["", "Rollback triggers", ""]
    lines.append(
        Table(
            ("trigger", "metric", "condition", "for", "source"),
            [
                (
                    trigger.text,
                    trigger.metric,
                    str(trigger.threshold),
                    human_duration(trigger.window) if trigger.window else "immediately",
                    plan.metric(trigger.metric).source.provider,
                )
                for trigger in plan.triggers
            ],
        )
    )

    objectives = plan.objectives
    dr = objectives.disaster_recovery
    lines += ["", "Objectives", ""]
    for backup in objectives.backups:
        lines.append(
            f"  backup {backup.kind}: every {human_duration(backup.every)}, "
            f"kept {human_duration(backup.retention)}"
        )
    secondary = [region for region in dr.regions if region != dr.primary]
    lines.append(
        f"  disaster recovery: primary {dr.primary}, secondary {', '.join(secondary)}; "
        f"RTO {human_duration(dr.rto)}, RPO {human_duration(dr.rpo)}, "
        f"drill every {human_duration(dr.drill_every)}"
    )
    return lines


def _unique_tables(plan: Plan) -> Iterator[GateTable]:
    seen: set[str] = set()
    for stage in plan.stages:
        for table in stage.tables:
            if table.name not in seen:
                seen.add(table.name)
                yield table


def _audience(audience: Audience) -> str:
    size = f"{audience.size:,} users" if audience.size is not None else "size not set"
    return f"{audience.kind}, {size}"


def _audience_detail(audience: Audience) -> str:
    parts = [_audience(audience)]
    if audience.platform_split:
        parts.append(f"iOS/Android {audience.platform_split.ios:g}/{audience.platform_split.android:g}")
    if audience.new_vs_existing:
        parts.append(f"new/existing {audience.new_vs_existing[0]:g}/{audience.new_vs_existing[1]:g}")
    if audience.include_segments:
        parts.append(f"includes {', '.join(audience.include_segments)}")
    if audience.exclude_segments:
        parts.append(f"excludes {', '.join(audience.exclude_segments)}")
    if audience.criteria:
        parts.append(f"criteria: {'; '.join(audience.criteria)}")
    return "; ".join(parts)


def _features(stage: Stage) -> str:
    parts = []
    for name, feature in stage.features.items():
        note = f" ({feature.note})" if feature.note else ""
        parts.append(f"{name}={feature.state.value}{note}")
    return ", ".join(parts) or "none listed"


def _criterion(criterion: Criterion) -> str:
    if criterion.kind is CriterionKind.METRICS:
        return "all gates of " + ", ".join(criterion.tables) + " meet target"
    if criterion.kind is CriterionKind.MANUAL:
        return "signed off by " + " or ".join(criterion.owners)
    if criterion.kind is CriterionKind.DRILL and criterion.window is not None:
        return f"a passed {criterion.drill} drill in this stage, within {human_duration(criterion.window)}"
    bound = f"{criterion.metric} {criterion.threshold}"
    if criterion.kind is CriterionKind.WINDOW and criterion.window is not None:
        return f"{bound} throughout the last {human_duration(criterion.window)}"
    return bound
