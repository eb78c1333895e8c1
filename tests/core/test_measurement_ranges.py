"""Measurements by meaning, from metrics files: an impossible reading holds, and at a tie the worse wins.

Every row starts from a metrics file in which every metric of the shipped plan's beta stage meets
its target (derived from the plan: the good end of the metric's range, so it keeps up with the
plan), changes one metric to a hostile reading, and expects the decision and its one-line reason.
The file goes through the real reader (``load_metrics_file``) and the real ``decide``; a sample of
rows also goes through ``rollout evaluate --metrics-file`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollout_policies.core import Action, Evidence, Measurement, Phase, decide, judged, within_range
from rollout_policies.errors import UserError
from rollout_policies.plan import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import CriterionKind, Direction, Metric, MetricSource, unit_range
from rollout_policies.providers.collect import metrics_for_stage
from rollout_policies.providers.metrics_file import load_metrics_file

PLAN = load_plan(DEFAULT_PLAN)
STAGE = PLAN.stage("beta")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOW_TEXT = "2026-12-01T12:00:00Z"
STARTED = NOW - STAGE.min_duration - timedelta(days=1)  # bake and min_duration are done
REPO = Path(__file__).resolve().parents[2]


def good_value(metric_id: str) -> float:
    """A reading that meets every target of the metric in the stage: the good end of its range."""
    metric = PLAN.metric(metric_id)
    bound = [
        t.value
        for t in (
            *(x for g in STAGE.gates if g.metric == metric_id for x in (g.target, g.alert)),
            *(c.threshold for c in (*STAGE.go, *STAGE.no_go) if c.metric == metric_id),
            *(t.threshold for t in PLAN.triggers if t.metric == metric_id),
        )
        if t is not None
    ]
    valid = metric.valid_range
    if metric.direction is Direction.HIGHER_IS_BETTER:
        return valid.max if valid.max is not None else max(bound) + 1
    return valid.min if valid.min is not None else min(bound) - 1


GOOD = {metric_id: good_value(metric_id) for metric_id in metrics_for_stage(PLAN, STAGE)}
SIGNOFFS = [c.id for c in (*STAGE.go, *STAGE.no_go) if c.kind is CriterionKind.MANUAL]


def metrics_text(changes: dict[str, str]) -> str:
    """A metrics file: every good value, with ``changes`` (metric id -> YAML entry) written over."""
    lines = [f"observed_at: {NOW_TEXT}", f"stage_started_at: {STARTED.isoformat()}", "metrics:"]
    for metric_id, value in GOOD.items():
        lines.append(f"  {metric_id}: {changes.get(metric_id, repr(value))}")
    lines.append(f"signoffs: [{', '.join(SIGNOFFS)}]")
    return "\n".join(lines) + "\n"


def decision_for(tmp_path: Path, changes: dict[str, str]) -> Any:
    path = tmp_path / "metrics.yaml"
    path.write_text(metrics_text(changes), encoding="utf-8")
    loaded = load_metrics_file(path, now=NOW)
    loaded.check_against(PLAN)
    return decide(
        PLAN,
        STAGE.id,
        len(STAGE.steps) - 1,
        loaded.evidence(),
        now=NOW,
        stage_started_at=STARTED,
        step_started_at=STARTED,
    )


def test_the_good_file_promotes(tmp_path: Path) -> None:
    """The baseline every row changes: without the change the stage would promote."""
    decision = decision_for(tmp_path, {})
    assert decision.action is Action.PROMOTE, decision.reasons


# --- the rows ----------------------------------------------------------------------------------------

T1 = "2026-12-01T11:59:00Z"  # a moment both readings of a tie share


@dataclass(frozen=True)
class Row:
    name: str
    changes: dict[str, str]
    action: Action
    reason: str  # one of the decision's reasons, exactly (``subject: message``)
    cli: bool = False


def out(metric: str, value: str, unit_text: str) -> str:
    return f"{value} is out of range: {metric} is always {unit_text}"


PCT = "within 0..100 (a percentage)"
NPS = "within 0..10 (the plan's range)"
ROWS = [
    # A value outside its unit's range is an error: the gate holds with the reason.
    Row(
        "crash rate -5%",
        {"crash_rate": "-5"},
        Action.HOLD,
        f"crash_rate: source error: {out('crash_rate', '-5 %', PCT)}",
        cli=True,
    ),
    Row(
        "crash rate just below zero",
        {"crash_rate": "-0.0001"},
        Action.HOLD,
        f"crash_rate: source error: {out('crash_rate', '-0.0001 %', PCT)}",
    ),
    Row(
        "crash rate 250%",
        {"crash_rate": "250"},
        Action.HOLD,
        f"crash_rate: source error: {out('crash_rate', '250 %', PCT)}",
    ),
    Row(
        "success rate 250%",
        {"search_success": "250"},
        Action.HOLD,
        f"search_success: source error: {out('search_success', '250 %', PCT)}",
        cli=True,
    ),
    Row(
        "key flow completion 100.5%",
        {"key_flow_completion": "100.5"},
        Action.HOLD,
        f"key_flow_completion: source error: {out('key_flow_completion', '100.5 %', PCT)}",
    ),
    Row(
        "sign-up rate 1e308%",
        {"rewards_signup": "1e308"},
        Action.HOLD,
        f"rewards_signup: source error: {out('rewards_signup', '1e+308 %', PCT)}",
    ),
    Row(
        "battery drain rate -1e308",
        {"battery_impact": "-1e308"},
        Action.HOLD,
        f"battery_impact: source error: {out('battery_impact', '-1e+308 %/hr', '>= 0 (a rate)')}",
        cli=True,
    ),
    Row(
        "load time -0.5 s",
        {"app_load_time": "-0.5"},
        Action.HOLD,
        f"app_load_time: source error: {out('app_load_time', '-0.5 s', '>= 0 (a duration)')}",
    ),
    Row(
        "API latency -2 s",
        {"api_response_time": "-2"},
        Action.HOLD,
        f"api_response_time: source error: {out('api_response_time', '-2 s', '>= 0 (a duration)')}",
    ),
    Row(
        "session -5 minutes",
        {"session_duration": "-5"},
        Action.HOLD,
        f"session_duration: source error: {out('session_duration', '-5 min', '>= 0 (a duration)')}",
    ),
    Row(
        "memory -1 MB",
        {"memory_usage": "-1"},
        Action.HOLD,
        f"memory_usage: source error: {out('memory_usage', '-1 MB', '>= 0 (a size)')}",
    ),
    Row("NPS 11 of 10", {"nps": "11"}, Action.HOLD, f"nps: source error: {out('nps', '11 score', NPS)}"),
    Row("NPS -1", {"nps": "-1"}, Action.HOLD, f"nps: source error: {out('nps', '-1 score', NPS)}"),
    # A count behind a go or no-go criterion: the criterion cannot be judged, so the stage holds.
    Row(
        "critical bugs -100",
        {"critical_bugs": "-100"},
        Action.HOLD,
        "beta-critical-bugs: <5 critical bugs reported: critical_bugs: source error: "
        + out("critical_bugs", "-100 bugs", ">= 0 (a count)"),
        cli=True,
    ),
    Row(
        "security issues -3 (a no-go)",
        {"critical_security_issues": "-3"},
        Action.HOLD,
        "beta-security: Critical security issues: critical_security_issues: source error: "
        + out("critical_security_issues", "-3 issues", ">= 0 (a count)"),
    ),
    # A trigger metric: an impossible newest reading leaves the trigger unknown, never clear.
    Row(
        "unhealthy hosts -1",
        {"lb_unhealthy_hosts": "-1"},
        Action.HOLD,
        "load-balancer-failures: Load Balancer Failures: newest measurement of lb_unhealthy_hosts failed: "
        + out("lb_unhealthy_hosts", "-1 hosts", ">= 0 (a count)"),
    ),
    Row(
        "database connected 1.5 of 1",
        {"db_connected": "1.5"},
        Action.HOLD,
        "database-connection-loss: Database Connection Loss: newest measurement of db_connected failed: "
        + out("db_connected", "1.5 ratio", "within 0..1 (the plan's range)"),
    ),
    Row(
        "API error rate -1e308 (gate and trigger)",
        {"api_error_rate": "-1e308"},
        Action.HOLD,
        "api-error-rate: API Error Rate > 10%: newest measurement of api_error_rate failed: "
        + out("api_error_rate", "-1e+308 %", PCT),
    ),
    # At a timestamp tie the worse reading wins, whatever the file order.
    Row(
        "tie: kinder value first",
        {"crash_rate": f"[{{value: 0.4, observed_at: {T1}}}, {{value: 3, observed_at: {T1}}}]"},
        Action.ROLLBACK,
        "crash_rate: 3% crosses alert > 2",
        cli=True,
    ),
    Row(
        "tie: kinder value last",
        {"crash_rate": f"[{{value: 3, observed_at: {T1}}}, {{value: 0.4, observed_at: {T1}}}]"},
        Action.ROLLBACK,
        "crash_rate: 3% crosses alert > 2",
    ),
    Row(
        "tie on a higher-is-better metric",
        {"search_success": f"[{{value: 90, observed_at: {T1}}}, {{value: 80, observed_at: {T1}}}]"},
        Action.HOLD,
        "search_success: 80% misses target > 85, alert < 75 not crossed",
    ),
    Row(
        "tie with an impossible value",
        {"crash_rate": f"[{{value: 0.4, observed_at: {T1}}}, {{value: -5, observed_at: {T1}}}]"},
        Action.HOLD,
        f"crash_rate: source error: {out('crash_rate', '-5 %', PCT)}",
    ),
    Row(
        "tie with a failed reading",
        {
            "crash_rate": f"[{{value: 0.4, observed_at: {T1}}}, "
            f"{{phase: error, message: timeout, observed_at: {T1}}}]"
        },
        Action.HOLD,
        "crash_rate: source error: timeout",
    ),
    Row(
        "tie with no data",
        {"app_load_time": f"[{{value: 1, observed_at: {T1}}}, {{phase: no_data, observed_at: {T1}}}]"},
        Action.HOLD,
        "app_load_time: source returned no data",
    ),
    Row(
        "tie on a go count",
        {"critical_bugs": f"[{{value: 1, observed_at: {T1}}}, {{value: 7, observed_at: {T1}}}]"},
        Action.HOLD,
        "beta-critical-bugs: <5 critical bugs reported: critical_bugs = 7: < 5 does not hold",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_hostile_reading(tmp_path: Path, row: Row) -> None:
    decision = decision_for(tmp_path, row.changes)
    assert decision.action is row.action
    assert row.reason in [str(reason) for reason in decision.reasons], [str(r) for r in decision.reasons]


def evaluate_cli(tmp_path: Path, changes: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "metrics.yaml"
    path.write_text(metrics_text(changes), encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rollout_policies.cli.main",
            "evaluate",
            "--stage",
            STAGE.id,
            "--metrics-file",
            str(path),
            "--now",
            NOW_TEXT,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


CLI_ROWS = [row for row in ROWS if row.cli]


@pytest.mark.parametrize("row", CLI_ROWS, ids=[row.name for row in CLI_ROWS])
def test_hostile_reading_through_rollout_evaluate(tmp_path: Path, row: Row) -> None:
    result = evaluate_cli(tmp_path, row.changes)
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    assert data["decision"] == row.action.value
    assert row.reason in [f"{r['subject']}: {r['message']}" for r in data["reasons"]]


# A metrics file whose value is no number at all is refused whole: one line, exit 2, no decision.
REFUSED = [
    ("NaN", "crash_rate", ".nan", "not a finite number: nan"),
    ("infinity", "crash_rate", ".inf", "not a finite number: inf"),
    ("minus infinity", "api_error_rate", "-.inf", "not a finite number: -inf"),
    ("a boolean", "critical_bugs", "true", "not a finite number: True"),
]


@pytest.mark.parametrize(("name", "metric", "entry", "problem"), REFUSED, ids=[r[0] for r in REFUSED])
def test_no_number_is_refused_with_one_line(
    tmp_path: Path, name: str, metric: str, entry: str, problem: str
) -> None:
    result = evaluate_cli(tmp_path, {metric: entry})
    path = tmp_path / "metrics.yaml"
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"  {metric}:")
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"rollout: error: {path}:{line}: metrics.{metric}: {problem}"]


# --- the rule itself, per unit --------------------------------------------------------------------------


def metric(unit: str, direction: Direction | None = Direction.LOWER_IS_BETTER) -> Metric:
    return Metric(
        id="m", name="M", unit=unit, direction=direction, source=MetricSource(provider="prometheus")
    )


@pytest.mark.parametrize(
    ("unit", "inside", "outside"),
    [
        ("%", (0, 100, 42.5), (-0.001, 100.001)),
        ("pp", (-100, 0, 100), (-100.5, 101)),
        ("ms", (0, 1e9), (-1,)),
        ("s", (0,), (-0.1,)),
        ("h", (0, 4), (-4,)),
        ("MB", (0, 150), (-1,)),
        ("users", (0, 10_000), (-1,)),
        ("issues", (0,), (-1,)),
        ("%/hr", (0, 250), (-1,)),  # a rate may pass 100: a phone can drain faster than 100%/hour
        ("orders/user/week", (0, 3.5), (-0.5,)),
        ("ratio", (0, 1.2), (-0.2,)),
        ("USD", (-50, 0, 1e6), ()),  # money and scores have no range of their own
        ("score", (-100, 100), ()),
        ("", (-1e300, 1e300), ()),
    ],
)
def test_unit_ranges(unit: str, inside: tuple[float, ...], outside: tuple[float, ...]) -> None:
    m = metric(unit)
    for value in inside:
        reading = Measurement.ok("m", value, NOW)
        assert within_range(reading, m) is reading, (unit, value)
    for value in outside:
        judged_reading = within_range(Measurement.ok("m", value, NOW), m)
        assert judged_reading.phase is Phase.ERROR, (unit, value)
        assert judged_reading.message.startswith(f"{value:g}"), judged_reading.message
        assert judged_reading.message.endswith(f"m is always {unit_range(unit)[1]} ({unit_range(unit)[0]})")


def test_judging_is_idempotent() -> None:
    metrics = {m.id: m for m in PLAN.metrics}
    evidence = Evidence.of(
        [
            Measurement.ok("crash_rate", -5, NOW),
            Measurement.ok("search_success", 90, NOW),
            Measurement.ok("search_success", 80, NOW),
        ]
    )
    once = judged(evidence, metrics)
    assert judged(once, metrics) == once
    assert [(m.metric, m.phase, m.value) for m in once.measurements] == [
        ("crash_rate", Phase.ERROR, None),
        ("search_success", Phase.OK, 80),
    ]
    assert once.measurements[1].message == "the worse of 2 measurements at 2026-12-01T12:00:00Z (80, 90)"


def test_tie_without_a_direction_is_an_error() -> None:
    monitor = metric("USD", direction=None)
    evidence = Evidence.of([Measurement.ok("m", 10, NOW), Measurement.ok("m", 12, NOW)])
    (only,) = judged(evidence, {"m": monitor}).measurements
    assert (only.phase, only.message) == (
        Phase.ERROR,
        "2 measurements at 2026-12-01T12:00:00Z disagree (10, 12) and the metric has no direction to say "
        "which is worse",
    )


def test_same_value_twice_is_no_tie() -> None:
    evidence = Evidence.of([Measurement.ok("crash_rate", 0.4, NOW), Measurement.ok("crash_rate", 0.4, NOW)])
    (only,) = judged(evidence, {m.id: m for m in PLAN.metrics}).measurements
    assert only == Measurement.ok("crash_rate", 0.4, NOW)


def test_a_metrics_file_user_error_stays_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("metrics: {crash_rate: .nan}\n")
    with pytest.raises(UserError):
        load_metrics_file(path, now=NOW)
