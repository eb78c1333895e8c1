"""What the rehearsal measured, worked out after the run: seed timeline, gate evidence, detection budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollout_policies.plan.model import Plan, parse_duration

# Seed weeks each stage begins in (1-based, inclusive range): beta weeks 1-2, 10% weeks 3-4, ...
SEED_WEEKS = {"beta": (1, 2), "limited": (3, 4), "medium": (5, 6), "majority": (7, 8), "full": (9, 10)}
RULE_INTERVAL_SECONDS = 30.0  # the shipped PrometheusRule group's interval (infra/alerts.py)
SCRAPE_SECONDS = 30.0  # a production scrape interval (Prometheus's default is 1m; 30s is common)


def stage_entries(history: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(commit, state) where a stack first entered each stage, in order (rollbacks keep the stage)."""
    entries, seen = [], set()
    for commit, state in history:
        if state.stage not in seen:
            seen.add(state.stage)
            entries.append((commit, state))
    return entries


def timeline(
    plan: Plan,
    stack: str,
    history: list[tuple[str, Any]],
    start: datetime,
    scale: float,
    interval_hours: float,
) -> list[dict[str, Any]]:
    """Each stage's promotion against its seed weeks and against when it was due.

    ``history`` is the stack's state on main after each commit, oldest first. A stage is due when the
    previous stage's last (re)start plus its minimum duration has passed; a rollback restarts a stage,
    so it moves the due time, and the row says so.
    """
    rows: list[dict[str, Any]] = []
    previous_start: datetime | None = None
    previous_stage = None
    entries = stage_entries(history)
    if entries:
        # The first stage starts when the rollout does: its last (re)start before it was left (the
        # setup commit wrote beta before the first deployment; the rollout's start commit restarts it).
        first_stage = entries[0][1].stage
        before_next = []
        for commit, state in history:
            if state.stage != first_stage:
                break
            before_next.append((commit, state))
        entries[0] = max(before_next, key=lambda item: item[1].stage_started_at)
    for commit, state in entries:
        day = (state.stage_started_at - start).total_seconds() * scale / 86400
        due_day = None
        if previous_stage is not None:
            # The previous stage's last start on main before this promotion (after any rollback).
            restarts = [s.stage_started_at for _, s in history if s.stage == previous_stage.id]
            last = max(restarts) if restarts else previous_start
            assert last is not None
            due = last + previous_stage.min_duration / scale
            # The stage's last step must also have baked: the plan's ramp can outlast the minimum.
            final = len(previous_stage.steps) - 1
            step_starts = [
                s.step_started_at for _, s in history if s.stage == previous_stage.id and s.step == final
            ]
            if step_starts:
                due = max(due, max(step_starts) + previous_stage.steps[final].bake / scale)
            due_day = (due - start).total_seconds() * scale / 86400
        first_week, last_week = SEED_WEEKS.get(state.stage, (0, 99))
        in_weeks = (first_week - 1) * 7 - 0.01 <= day < last_week * 7
        late_hours = None if due_day is None else (day - due_day) * 24
        on_time = late_hours is None or late_hours <= interval_hours * 2
        rows.append(
            {
                "stack": stack,
                "stage": state.stage,
                "commit": commit,
                "day": round(day, 2),
                "seed_weeks": f"{first_week}-{last_week}",
                "due_day": None if due_day is None else round(due_day, 2),
                "late": "-" if late_hours is None else f"{late_hours:.1f} h",
                "in_seed_weeks": in_weeks,
                "within_interval": on_time,
                "ok": in_weeks and on_time,
            }
        )
        previous_stage, previous_start = plan.stage(state.stage), state.stage_started_at
    return rows


def budgets(plan: Plan, faults: list[dict[str, Any]], detection_budget: str) -> list[dict[str, Any]]:
    """Per trigger that rolled back in the run: the production detection budget against the measured parts.

    At ``--scale 1`` a trigger's rule fires ``detection_budget`` before its window ends; the rule
    interval and a scrape are production's (30 s each), the webhook-to-commit and commit-to-live times
    are this run's measurements (they do not shrink with the scale). Margin below zero: the rollback
    would land after the window.
    """
    budget = parse_duration(detection_budget).total_seconds()
    rows = []
    for fault in faults:
        trigger = fault.get("trigger")
        if not trigger or fault.get("responded_at") is None or fault.get("stable_at") is None:
            continue
        window = next(t.window for t in plan.triggers if t.id == trigger).total_seconds()
        webhook = fault["responded_at"] - (fault.get("detected_at") or fault["responded_at"])
        apply = fault["stable_at"] - fault["responded_at"]
        allowance = budget if window >= budget else max(window, budget)
        margin = allowance - (RULE_INTERVAL_SECONDS + SCRAPE_SECONDS + webhook + apply)
        rows.append(
            {
                "trigger": trigger,
                "window": window,
                "rule_interval": RULE_INTERVAL_SECONDS,
                "scrape": SCRAPE_SECONDS,
                "webhook": f"{webhook:.1f} s",
                "apply": f"{apply:.1f} s",
                "budget": budget,
                "margin": round(margin, 1),
                "ok": margin >= 0,
            }
        )
    return rows


def evidence_series(prometheus_url: str, start: float, end: float, plan: Plan) -> list[dict[str, Any]]:
    """Canary against baseline over the run, from Prometheus, with each gate's target and alert lines,
    and for the error rate the sequential test's rate-ratio bounds (``core.sequential``)."""
    import httpx

    queries = {
        "api_error_rate": (
            "API error rate",
            "%",
            'sum by (track) (rate(http_server_requests_total{code=~"5.."}[30s])) * 100'
            " / sum by (track) (rate(http_server_requests_total[30s]))",
        ),
        "server_response_time": (
            "Server response time",
            "ms",
            "1000 * sum by (track) (rate(http_server_request_duration_seconds_sum[30s]))"
            " / sum by (track) (rate(http_server_request_duration_seconds_count[30s]))",
        ),
        "db_connected": (
            "Database connection (1 all, 0 none)",
            "",
            "min by (track) (markethub_db_connection_up)",
        ),
    }
    series = []
    step = max(2.0, (end - start) / 400)
    for metric_id, (title, unit, promql) in queries.items():
        try:
            body = httpx.get(
                f"{prometheus_url}/api/v1/query_range",
                params={"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
                timeout=20,
            ).json()
        except (httpx.HTTPError, ValueError):
            continue
        tracks = {}
        for result in body.get("data", {}).get("result", []):
            track = result["metric"].get("track", "?")
            tracks[track] = [(float(t) - start, _number(v)) for t, v in result["values"]]
        gate = next((g for s in plan.stages for g in s.gates if g.metric == metric_id and g.target), None)
        series.append(
            {
                "metric": metric_id,
                "title": f"{title}: canary vs baseline",
                "unit": unit,
                "tracks": tracks,
                "target": gate.target.value if gate and gate.target else None,
                "alert": gate.alert.value if gate and gate.alert else None,
                "bounds": [],
            }
        )
    ratio = _ratio_bounds(prometheus_url, start, end)
    if ratio:
        series.append(ratio)
    return series


def _ratio_bounds(prometheus_url: str, start: float, end: float) -> dict[str, Any] | None:
    """The sequential test run over the error counts of every 10 s, restarted when the canary
    changes weight: its anytime-valid bounds on canary/baseline error-rate ratio."""
    import httpx

    from rollout_policies.core.sequential import RateComparison

    def counts(promql: str) -> dict[str, list[tuple[float, float]]]:
        body = httpx.get(
            f"{prometheus_url}/api/v1/query_range",
            params={"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "10"},
            timeout=20,
        ).json()
        out = {}
        for result in body.get("data", {}).get("result", []):
            out[result["metric"].get("track", "?")] = [(float(t), _number(v)) for t, v in result["values"]]
        return out

    try:
        events = counts('sum by (track) (increase(http_server_requests_total{code=~"5.."}[10s]))')
        trials = counts("sum by (track) (increase(http_server_requests_total[10s]))")
    except (httpx.HTTPError, ValueError):
        return None
    if not {"candidate", "stable"} <= set(trials):
        return None
    test = RateComparison(alpha=0.01, tolerance=1.5)
    low, high = [], []
    ev = {k: dict(v) for k, v in events.items()}
    for (moment, canary_trials), (_, base_trials) in zip(trials["candidate"], trials["stable"], strict=False):
        if canary_trials <= 0 or base_trials <= 0:
            continue
        verdict = test.observe(
            ev.get("candidate", {}).get(moment, 0.0),
            canary_trials,
            ev.get("stable", {}).get(moment, 0.0),
            base_trials,
        )
        bounds = _interval(verdict)
        if bounds:
            low.append((moment - start, bounds[0]))
            high.append((moment - start, bounds[1]))
    if not low:
        return None
    return {
        "metric": "api_error_rate_ratio",
        "title": "API error rate, canary/baseline ratio: sequential (anytime-valid) bounds",
        "unit": "ratio",
        "tracks": {},
        "target": 1.5,
        "alert": None,
        "bounds": [{"name": "lower bound", "points": low}, {"name": "upper bound", "points": high}],
    }


def _interval(verdict: Any) -> tuple[float, float] | None:
    """The comparison's confidence sequence on the rate ratio (``upper`` capped for plotting)."""
    low, high = float(verdict.lower), float(verdict.upper)
    if high != high or low != low:
        return None
    return low, min(high, 20.0)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN (no traffic) is a gap
