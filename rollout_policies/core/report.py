"""A stage decision as plain data (JSON) and as a readable text report: the same content in both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollout_policies.core.decision import StageDecision
from rollout_policies.core.gates import ComparisonVerdict
from rollout_policies.core.sequential import comparison_evidence
from rollout_policies.plan.model import ComparisonKind, Threshold


def decision_as_dict(decision: StageDecision, *, plan: str = "") -> dict[str, Any]:
    """Everything in a decision as JSON-ready values (enums as their strings, times as ISO 8601)."""
    return {
        "plan": plan,
        "stage": decision.stage,
        "step": decision.step,
        "last_step": decision.last_step,
        "now": _iso(decision.now),
        "decision": decision.action.value,
        "reasons": [
            {"code": r.code.value, "subject": r.subject, "message": r.message} for r in decision.reasons
        ],
        "gates": [
            {
                "table": g.table,
                "metric": g.metric,
                "name": g.name,
                "value": g.value,
                "unit": g.unit,
                "target": _threshold(g.target),
                "alert": _threshold(g.alert),
                "verdict": g.verdict.value,
                "gating": g.gating,
                "reason": g.reason,
                "observed_at": _iso(g.observed_at),
                **_comparison_fields(g.comparison),
            }
            for g in decision.gates
        ],
        "criteria": [
            {
                "id": c.id,
                "text": c.text,
                "kind": c.kind.value,
                "no_go": c.no_go,
                "status": c.status.value,
                "reason": c.reason,
                "owners": list(c.owners),
            }
            for c in decision.criteria
        ],
        "triggers": [
            {
                "id": t.id,
                "text": t.text,
                "metric": t.metric,
                "status": t.status.value,
                "reason": t.reason,
                "since": _iso(t.since),
            }
            for t in decision.triggers
        ],
        "checklist": [c.id for c in decision.pending_signoffs],
        "awaiting_signoff_only": decision.awaiting_signoff_only,
    }


# A block of a readable report: a line of text, or a table as (header, rows).
Block = str | tuple[list[str], list[list[str]]]


def render_text(decision: StageDecision, *, plan: str = "") -> str:
    """The verdict table, the criteria, the triggers, then the decision and every reason."""
    lines: list[str] = []
    for block in report_blocks(decision, plan=plan):
        lines += [block] if isinstance(block, str) else _table(*block)
    return "\n".join(lines) + "\n"


def report_blocks(decision: StageDecision, *, plan: str = "") -> list[Block]:
    """What `render_text` prints, with its tables as data, for a caller that draws tables itself."""
    blocks: list[Block] = [
        f"plan {plan}  stage {decision.stage}  step {decision.step}  now {_iso(decision.now)}",
        "",
    ]
    gate_rows = []
    for g in decision.gates:
        gate_rows.append(
            [
                f"{g.table}: {g.name}" if g.table else g.name,
                "-"
                if g.value is None
                else f"{g.value:g}{g.unit if g.unit in ('%', 's', 'ms', 'MB') else ''}",
                _threshold(g.target) or "-",
                _threshold(g.alert) or "-",
                g.verdict.value,
                g.reason,
            ]
        )
        if g.comparison is not None:
            gate_rows.append(_comparison_row(g.comparison))
    blocks.append((["gate", "value", "target", "alert", "verdict", "reason"], gate_rows))
    if decision.criteria:
        rows = [
            [f"{'no-go' if c.no_go else 'go'}: {c.id}", c.kind.value, c.status.value, c.reason]
            for c in decision.criteria
        ]
        blocks += ["", (["criterion", "kind", "status", "reason"], rows)]
    if decision.triggers:
        rows = [[t.id, t.status.value, t.reason] for t in decision.triggers]
        blocks += ["", (["trigger", "status", "reason"], rows)]
    blocks += ["", f"decision: {decision.action.value.upper()}"]
    blocks += [f"  - [{r.code.value}] {r}" for r in decision.reasons]
    if decision.pending_signoffs:
        blocks += ["", "sign-off checklist:"]
        blocks += [
            f"  [ ] {c.id}: {c.text} ({', '.join(c.owners) or 'decision authority'})"
            for c in decision.pending_signoffs
        ]
    return blocks


def _comparison_fields(part: ComparisonVerdict | None) -> dict[str, Any]:
    """A comparison gate's extra JSON keys: its own verdict and reason, and the test's evidence."""
    if part is None:
        return {}
    s = part.settings
    return {
        "comparison_verdict": part.verdict.value,
        "comparison_reason": part.reason,
        "comparison_settings": {
            "kind": s.kind.value,
            "alpha": s.alpha,
            "margin": s.margin,
            "tolerance": s.tolerance,
            "quantile": s.latency_quantile if s.kind is ComparisonKind.LATENCY else None,
            "dispersion": s.dispersion,
        },
        "comparison": None if part.result is None else comparison_evidence(part.result),
    }


def _comparison_row(part: ComparisonVerdict) -> list[str]:
    """The row under a comparison gate: the canary-to-baseline ratio, its pass and rollback bounds."""
    s = part.settings
    result = part.result
    ratio = "-" if result is None or result.estimate is None else f"{result.estimate:.2f}x"
    what = "rate" if s.kind is ComparisonKind.RATE else f"p{s.latency_quantile * 100:g}"
    reason = part.reason if result is None else str(comparison_evidence(result)["summary"])
    if result is not None and part.reason != f"vs baseline: {reason}":
        reason = part.reason  # stale or failed: the part's own reason says why, with the summary
    return [
        f"  vs baseline ({what})",
        ratio,
        f"< {s.tolerance:g}x",
        f"> {1 + s.margin:g}x @{s.alpha:g}",
        part.verdict.value,
        reason,
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _threshold(value: Threshold | None) -> str | None:
    return None if value is None else str(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
