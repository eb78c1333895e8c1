"""The HTML gate report: the replayed history, `evaluate --html`, and the page in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from headless import (
    assert_self_contained,
    figures,
    plots_counted_by_the_page,
    rendered_dom,
    script_errors,
)

from rollout_policies.core.decision import decide
from rollout_policies.pages import gates
from rollout_policies.plan.loader import load_plan
from rollout_policies.providers import MetricsFileProvider

PLAN = """\
name: page-test-plan
service: shop
decision_authority: [cto]
metrics:
  - {id: crash_rate, name: Crashes, unit: "%", direction: lower,
     source: {provider: prometheus, query: crash_rate, max_age: 15m}}
  - {id: app_load_time, name: App Load Time, unit: s, direction: lower,
     source: {provider: prometheus, query: app_load_time, max_age: 15m}}
tables:
  - name: Technical Metrics
    gates:
      - {metric: crash_rate, target: "< 1", alert: "> 2", comparison: {kind: rate, alpha: 0.01}}
      - {metric: app_load_time, target: "< 3", alert: "> 5"}
stages:
  - id: limited
    name: Limited
    audience: {kind: percentage}
    steps: [{weight: 5, bake: 1d}, {weight: 100, bake: 2d}]
    min_duration: 3d
    rollback_objective: 30m
    tables: [Technical Metrics]
triggers:
  - {id: crash-rate, text: Crash Rate > 5%, metric: crash_rate, threshold: "> 5", window: 5m}
objectives:
  backups: [{kind: full, every: 1d, retention: 7d}]
  disaster_recovery: {regions: [a, b], primary: a, rto: 30m, rpo: 1h, drill_every: 7d}
"""

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def metrics_text(minutes: int = 60, regress_after: int = 30) -> str:
    """An hour of the stage: crash rate readings every 5 minutes, per-version counts every minute;
    the canary's errors rise from 10 to 25 per 1000 (baseline 10) after ``regress_after`` minutes."""
    lines = [
        "observed_at: 2026-11-28T08:59:00Z",
        "stage_started_at: 2026-11-28T07:59:00Z",
        "step_started_at: 2026-11-27T07:00:00Z",
        "metrics:",
        "  app_load_time: 2.1",
        "  crash_rate:",
    ]
    lines += [
        f"    - {{value: {0.4 + m / 40:.2f}, observed_at: 2026-11-28T08:{m:02d}:00Z}}"
        for m in range(0, minutes, 5)
    ]
    lines += ["comparisons:", "  crash_rate:"]
    lines += [
        f"    - {{observed_at: 2026-11-28T08:{m:02d}:00Z, canary_events: {10 if m < regress_after else 25}, "
        "canary_trials: 1000, baseline_events: 990, baseline_trials: 99000}"
        for m in range(minutes)
    ]
    return "\n".join(lines) + "\n"


def files(tmp_path: Path, text: str) -> tuple[Path, Path]:
    plan, metrics = tmp_path / "plan.yaml", tmp_path / "metrics.yaml"
    plan.write_text(PLAN)
    metrics.write_text(text)
    return plan, metrics


def replayed(tmp_path: Path, text: str, points: int) -> tuple[gates.StageDecision, ...]:
    plan_path, metrics_path = files(tmp_path, text)
    plan = load_plan(plan_path)
    provider = MetricsFileProvider(path=metrics_path, now=NOW)
    started = provider.file().stage_started_at
    assert started is not None
    return gates.replay(
        plan, "limited", 0, provider.evidence(plan, ()), now=NOW, stage_started_at=started,
        step_started_at=started, points=points,
    )  # fmt: skip


def test_the_replay_ends_with_the_decision_at_now(tmp_path: Path) -> None:
    history = replayed(tmp_path, metrics_text(), points=24)
    plan_path, metrics_path = files(tmp_path, metrics_text())
    plan = load_plan(plan_path)
    evidence = MetricsFileProvider(path=metrics_path, now=NOW).evidence(plan, ())
    started = datetime(2026, 11, 28, 7, 59, tzinfo=UTC)
    at_now = decide(plan, "limited", 0, evidence, now=NOW, stage_started_at=started, step_started_at=started)
    assert len(history) == 24
    assert history[-1] == at_now
    assert [d.now for d in history] == sorted({d.now for d in history}), "oldest first, no repeats"
    # Each earlier point judged only what was known then: calm at first, a rollback at the end.
    assert (history[0].action.value, history[-1].action.value) == ("hold", "rollback")
    assert history[0].now == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def test_readings_taken_at_now_are_one_point(tmp_path: Path) -> None:
    text = (
        "observed_at: 2026-11-28T09:00:00Z\nstage_started_at: 2026-11-28T07:59:00Z\n"
        "metrics: {crash_rate: 0.4, app_load_time: 2.1}\n"
    )
    assert [d.now for d in replayed(tmp_path, text, points=24)] == [NOW]


def test_evaluate_html_writes_the_page_and_the_data_evaluate_json_prints(tmp_path: Path) -> None:
    plan, metrics = files(tmp_path, metrics_text())
    page = tmp_path / "out" / "gates.html"
    command = [sys.executable, "-m", "rollout_policies.cli.main", "evaluate", "--plan", str(plan),
               "--stage", "limited", "--step", "0", "--metrics-file", str(metrics),
               "--now", "2026-11-28T09:00:00Z", "--json"]  # fmt: skip
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    with_page = subprocess.run(
        [*command, "--html", str(page), "--points", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (with_page.returncode, with_page.stdout) == (plain.returncode, plain.stdout)
    assert with_page.stderr == f"gate report: {page}\n"
    data = json.loads(page.with_suffix(".json").read_text())
    assert len(data["decisions"]) == 6
    assert data["decisions"][-1] == json.loads(plain.stdout)
    assert "Decision: ROLLBACK" in page.read_text()


def test_the_page_renders_its_plots_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "gates.html"
    gates.write(page, replayed(tmp_path, metrics_text(), points=24), plan="page-test-plan", stack="prod-a")
    html = page.read_text()
    assert_self_contained(html)

    dom = rendered_dom(page)

    assert script_errors(dom) == ""
    shown = figures(dom)
    # crash rate: its reading, and canary vs baseline (3 panels); app load time: its reading
    assert sorted(shown) == ["plot-gate-1-1", "plot-gate-1-2", "plot-gate-2-1"]
    assert plots_counted_by_the_page(dom) == 3
    for name, markup in shown.items():
        assert "<svg" in markup and "<path" in markup, f"{name} has no drawn svg"
    canary = shown["plot-gate-1-2"]
    for label in ("canary vs baseline", "canary/baseline ratio", "99% bounds", "sequential evidence"):
        assert label in canary, label
    assert "target &lt; 1" in shown["plot-gate-1-1"] and "alert &gt; 2" in shown["plot-gate-1-1"]
