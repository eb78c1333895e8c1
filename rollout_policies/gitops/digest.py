"""The daily stand-up digest and the weekly executive report: KPIs against targets, decisions,
incidents, risks and what is due next, from git (the rollout's audit trail), the plan, the drill
reports and one evaluation of each stack's gates.

``gather`` reads; ``markdown`` and ``slack_lines`` are pure renderings of the data it returns (the
HTML page is ``rollout_policies.pages.digest``). Decisions are the commits on main whose trailers
carry ``Rollout-Decision`` for a stack, timed by ``Rollout-At`` (the decision's own clock).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from rollout_policies.core import Action, Evidence, StageDecision, decide
from rollout_policies.core.progression import locate
from rollout_policies.gitops.engine import GitOps
from rollout_policies.state import RolloutState


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"

    @property
    def length(self) -> timedelta:
        return timedelta(days=1) if self is Period.DAILY else timedelta(days=7)

    @property
    def heading(self) -> str:
        return "Daily stand-up digest" if self is Period.DAILY else "Weekly executive report"


# Decisions that are incidents: traffic went back to the stable version.
INCIDENTS = ("rollback", "abort")
# How far back the log is read for a period's decisions (commits, newest first).
LOG_LIMIT = 500


@dataclass(frozen=True)
class Sources:
    """Where the digest reads: the repository (through ``ops``), each stack's evidence, the drills."""

    ops: GitOps
    evidence_for: Callable[[RolloutState], Evidence]
    drill_reports: Path  # <repo>/reports/drills: <drill>/<stamp>.json as `rollout drill` writes them


def gather(sources: Sources, stacks: Sequence[str], *, period: Period, now: datetime) -> dict[str, Any]:
    """Everything the digest says, as JSON-ready data."""
    ops, plan = sources.ops, sources.ops.plan
    since = now - period.length
    statuses = ops.status(stacks)
    rows = []
    for item in statuses:
        state = item.state
        decision = decide(
            plan,
            state.stage,
            state.step,
            sources.evidence_for(state),
            now=now,
            stage_started_at=state.stage_started_at,
            step_started_at=state.step_started_at,
        )
        rows.append(_stack_row(ops, item.stack, state, decision, item.pending, now))
    decisions = _decisions(ops, stacks, since, now)
    drills = _drills(sources.drill_reports, plan.objectives.disaster_recovery.drill_every, now)
    return {
        "period": period.value,
        "title": period.heading,
        "plan": plan.name,
        "since": _iso(since),
        "until": _iso(now),
        "stacks": rows,
        "kpis": _kpi_summary(rows),
        "decisions": decisions,
        "incidents": [d for d in decisions if d["decision"] in INCIDENTS],
        "drills": drills,
        "risks": _risks(rows, drills),
        "next": _next(rows, drills, now, now + timedelta(days=7)),
    }


def _stack_row(
    ops: GitOps,
    stack: str,
    state: RolloutState,
    decision: StageDecision,
    pending: tuple[str, ...],
    now: datetime,
) -> dict[str, Any]:
    stage, step = locate(ops.plan, state)
    ready = state.step_started_at + step.bake
    if decision.last_step:
        ready = max(ready, state.stage_started_at + stage.min_duration)
    gating = [g for g in decision.gates if g.gating]
    return {
        "stack": stack,
        "stage": state.stage,
        "step": state.step,
        "candidate": state.candidate.version,
        "stable": state.stable.version,
        "candidate_weight": state.candidate_weight,
        "paused": state.paused,
        "rolled_back": state.rolled_back,
        "released": state.released,
        "decision": decision.action.value,
        "reasons": [str(r) for r in decision.reasons],
        "pending_promotions": list(pending),
        "next_promotion_at": None if state.paused or state.released else _iso(max(ready, now)),
        "kpis": [
            {
                "gate": f"{g.table}: {g.name}" if g.table else g.name,
                "value": g.value,
                "unit": g.unit,
                "target": None if g.target is None else str(g.target),
                "verdict": g.verdict.value,
                "reason": g.reason,
            }
            for g in gating
        ],
        "on_target": sum(1 for g in gating if g.verdict.value == "meets_target"),
    }


def _kpi_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(len(r["kpis"]) for r in rows)
    met = sum(r["on_target"] for r in rows)
    return {"gates": total, "on_target": met, "share": round(100.0 * met / total, 1) if total else None}


def _decisions(ops: GitOps, stacks: Sequence[str], since: datetime, now: datetime) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    ref = ops.main_ref if ops.repo.sha(ops.main_ref) else "HEAD"
    for stack in stacks:
        for commit in ops.repo.trailers(ref, ops.path(stack), limit=LOG_LIMIT):
            kind = commit.trailer("Rollout-Decision")
            if not kind or stack not in commit.trailer_values("Rollout-Stack"):
                continue
            at = _parse(commit.trailer("Rollout-At") or commit.committed_at)
            if not since < at <= now:
                continue
            entry = seen.setdefault(
                commit.sha,
                {
                    "at": _iso(at),
                    "decision": kind,
                    "stacks": [],
                    "subject": commit.subject,
                    "actor": commit.trailer("Rollout-Actor") or commit.author,
                    "reason": commit.trailer("Rollout-Reason") or commit.trailer("Rollout-Reasons") or "",
                    "commit": commit.sha,
                },
            )
            entry["stacks"].append(stack)
    return sorted(seen.values(), key=lambda d: (d["at"], d["commit"]))


def _drills(folder: Path, every: timedelta, now: datetime) -> list[dict[str, Any]]:
    """Each drill's newest report: when, its verdict, and when the next one is due."""
    found: list[dict[str, Any]] = []
    for drill in sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []:
        reports = sorted(drill.glob("*.json"))
        if not reports:
            continue
        try:
            data = json.loads(reports[-1].read_text(encoding="utf-8"))
            started = _parse(str(data["started_at"]))
        except (OSError, ValueError, KeyError) as err:
            found.append({"drill": drill.name, "error": f"{reports[-1].name}: {err}"})
            continue
        found.append(
            {
                "drill": drill.name,
                "last": _iso(started),
                "verdict": str(data.get("verdict", "unknown")),
                "executed": bool(data.get("executed")),
                "due": _iso(started + every),
                "overdue": started + every < now,
            }
        )
    return found


def _risks(rows: list[dict[str, Any]], drills: list[dict[str, Any]]) -> list[str]:
    risks = []
    for row in rows:
        where = f"{row['stack']} ({row['stage']} step {row['step']})"
        if row["decision"] == Action.ROLLBACK.value:
            risks.append(f"{where}: the gates call for a rollback: {'; '.join(row['reasons'][:2])}")
        if row["paused"]:
            risks.append(f"{where}: paused; promotions wait for `rollout resume`")
        off = [k for k in row["kpis"] if k["verdict"] != "meets_target"]
        if off:
            counts = Counter(k["verdict"] for k in off)
            kinds = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
            risks.append(
                f"{where}: {len(off)} of {len(row['kpis'])} gates not on target ({kinds}); "
                f"first: {off[0]['gate']}: {off[0]['reason']}"
            )
    for drill in drills:
        if "error" in drill:
            risks.append(f"drill {drill['drill']}: report unreadable: {drill['error']}")
        elif drill["verdict"] not in ("passed", "dry-run"):
            risks.append(f"drill {drill['drill']}: last run {drill['verdict']} ({drill['last']})")
        elif drill["overdue"]:
            risks.append(f"drill {drill['drill']}: overdue since {drill['due']}")
    return risks


def _next(
    rows: list[dict[str, Any]], drills: list[dict[str, Any]], now: datetime, horizon: datetime
) -> list[dict[str, str]]:
    due = []
    for row in rows:
        at = row["next_promotion_at"]
        if at is not None and _parse(at) <= horizon:
            what = f"{row['stack']}: earliest promotion from {row['stage']} step {row['step']}"
            due.append({"at": at, "what": what})
    for drill in drills:
        if "due" in drill and _parse(drill["due"]) <= horizon:
            due.append({"at": max(drill["due"], _iso(now)), "what": f"drill {drill['drill']} due"})
    return sorted(due, key=lambda d: d["at"])


def markdown(data: dict[str, Any]) -> str:
    """The digest as Markdown: the file, and (condensed) the Slack post."""
    kpis = data["kpis"]
    share = "no gates" if kpis["share"] is None else f"{kpis['on_target']}/{kpis['gates']} ({kpis['share']}%)"
    lines = [
        f"# {data['title']}: {data['plan']}",
        "",
        f"{data['since']} to {data['until']}",
        "",
        "## KPIs against targets",
        "",
        f"Gates on target: **{share}**.",
        "",
        "| stack | stage | step | candidate | weight | decision now | on target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["stacks"]:
        state = " (paused)" if row["paused"] else " (rolled back)" if row["rolled_back"] else ""
        lines.append(
            f"| {row['stack']} | {row['stage']}{state} | {row['step']} | {row['candidate']} | "
            f"{row['candidate_weight']}% | {row['decision']} | {row['on_target']}/{len(row['kpis'])} |"
        )
    lines += ["", "## Decisions", ""]
    lines += [
        f"- {d['at']} **{d['decision']}** {', '.join(d['stacks'])}: {d['subject']} "
        f"({d['actor']}, `{d['commit'][:8]}`)"
        for d in data["decisions"]
    ] or ["- none in this period"]
    lines += ["", "## Incidents", ""]
    lines += [
        f"- {d['at']} {d['decision']} of {', '.join(d['stacks'])}: {d['reason'] or d['subject']}"
        for d in data["incidents"]
    ] or ["- none: no rollback or abort in this period"]
    lines += ["", "## Risks", ""]
    lines += [f"- {risk}" for risk in data["risks"]] or ["- none found"]
    lines += ["", "## Due in the next 7 days", ""]
    lines += [f"- {item['at']}: {item['what']}" for item in data["next"]] or ["- nothing scheduled"]
    return "\n".join(lines) + "\n"


def slack_lines(data: dict[str, Any]) -> tuple[str, list[str]]:
    """The Slack post: a head line and a few lines, bulleted by ``text_message`` (the file holds the rest)."""
    kpis = data["kpis"]
    head = (
        f"*{data['title']}* {data['plan']}: {kpis['on_target']}/{kpis['gates']} gates on target, "
        f"{len(data['decisions'])} decisions, {len(data['incidents'])} incidents, {len(data['risks'])} risks"
    )
    lines = [
        f"{r['stack']}: {r['stage']} step {r['step']}, {r['candidate_weight']}% on {r['candidate']}, "
        f"now {r['decision']}"
        for r in data["stacks"]
    ]
    lines += [f"risk: {risk}" for risk in data["risks"][:4]]
    lines += [f"due {item['at']}: {item['what']}" for item in data["next"][:4]]
    return head, lines


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
