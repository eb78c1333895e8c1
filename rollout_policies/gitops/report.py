"""The promotion pull request's body: the gate report as Markdown, manual gates as a checklist."""

from __future__ import annotations

from collections.abc import Sequence

from rollout_policies.core import CriterionStatus, StageDecision, Verdict
from rollout_policies.core.progression import Transition
from rollout_policies.plan.model import CriterionKind, Threshold
from rollout_policies.state import RolloutState

_VERDICT = {
    Verdict.MEETS_TARGET: "✅ meets target",
    Verdict.BETWEEN: "⚠️ between target and alert",
    Verdict.BEYOND_ALERT: "🛑 beyond alert",
    Verdict.NO_DATA: "❔ no data",
    Verdict.ERROR: "❌ source error",
    Verdict.NOT_YET_EVALUABLE: "⏳ not yet evaluable",
    Verdict.MONITOR: "👀 monitor only",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _threshold(value: Threshold | None) -> str:
    return "–" if value is None else f"`{value}`"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value:g}{unit}" if unit in ("%", "s", "ms", "MB") else f"{value:g} {unit}".strip()


def gate_table(decision: StageDecision) -> list[str]:
    lines = ["| table | gate | value | target | alert | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for gate in decision.gates:
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    gate.table,
                    gate.name,
                    _value(gate.value, gate.unit),
                    _threshold(gate.target),
                    _threshold(gate.alert),
                    _VERDICT[gate.verdict],
                )
            )
            + " |"
        )
    return lines


def checklist(decision: StageDecision) -> list[str]:
    """Manual criteria as checkboxes: ticked when signed off, open when a person still must."""
    lines = []
    for result in decision.criteria:
        if result.kind is not CriterionKind.MANUAL:
            continue
        done = "x" if result.status is CriterionStatus.MET else " "
        owners = f" ({', '.join(result.owners)})" if result.owners else ""
        lines.append(f"- [{done}] **{result.id}**: {_cell(result.text)}{owners}")
    return lines


def pull_body(
    *,
    plan: str,
    stack: str,
    before: RolloutState,
    transition: Transition,
    decision: StageDecision,
    reviewers: Sequence[str],
    config_path: str,
    report_link: str = "",
) -> str:
    after = transition.state
    lines = [
        f"## Promotion: {stack} — {transition.description}",
        "",
        f"Plan **{plan}**, decision **{decision.action.value}** at {decision.now.isoformat()}.",
        "",
        "| | stage | step | candidate | stable | weights |",
        "| --- | --- | --- | --- | --- | --- |",
        _state_row("before", before),
        _state_row("after", after),
        "",
        f"Merging this pull request runs `pulumi up` for stack `{stack}` (`{config_path}`).",
        "",
        "### Gate report",
        "",
        *gate_table(decision),
        "",
    ]
    if report_link:
        lines += [
            f"Each gate's evidence over the stage, with plots: [the gate report]({report_link}) "
            f"(`{stack}.html` among the run's artifacts).",
            "",
        ]
    boxes = checklist(decision)
    if boxes:
        lines += ["### Sign-offs (manual gates)", "", *boxes, ""]
    if decision.triggers:
        lines += ["### Rollback triggers", ""]
        lines += [f"- `{t.id}` {t.status.value}: {_cell(t.reason)}" for t in decision.triggers]
        lines.append("")
    lines += ["### Reasons", ""] + [f"- {_cell(str(reason))}" for reason in decision.reasons]
    lines += ["", "### Decision authority", ""]
    lines.append(
        "Required reviewers (from the plan's decision_authority, via CODEOWNERS): "
        + (", ".join(reviewers) if reviewers else "none configured")
    )
    return "\n".join(lines) + "\n"


def _weights(state: RolloutState) -> str:
    return ", ".join(f"{colour.value} {weight}%" for colour, weight in sorted(state.weights.items()))


def _state_row(label: str, state: RolloutState) -> str:
    candidate = f"{state.candidate.version} ({state.candidate.colour.value})"
    stable = f"{state.stable.version} ({state.stable.colour.value})"
    return f"| {label} | {state.stage} | {state.step} | {candidate} | {stable} | {_weights(state)} |"
