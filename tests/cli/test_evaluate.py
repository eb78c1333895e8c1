"""`rollout evaluate` end to end: the real command in a subprocess, a small plan and metrics files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PLAN = """\
name: cli-test-plan
service: shop
decision_authority: [cto]
metrics:
  - {id: crash_rate, name: Crashes, unit: "%", direction: lower,
     source: {provider: prometheus, query: crash_rate, max_age: 15m}}
  - {id: app_load_time, name: App Load Time, unit: s, direction: lower,
     source: {provider: prometheus, query: app_load_time, max_age: 15m}}
  - {id: critical_issues, name: Critical Issues, unit: issues, direction: lower,
     source: {provider: prometheus, query: critical_issues, max_age: 1h}}
tables:
  - name: Technical Metrics
    gates:
      - {metric: crash_rate, target: "< 1", alert: "> 2"}
      - {metric: app_load_time, target: "< 3", alert: "> 5"}
stages:
  - id: beta
    name: Beta
    audience: {kind: cohort, size: 50}
    steps: [{weight: 2, bake: 1d}]
    min_duration: 7d
    rollback_objective: 30m
    tables: [Technical Metrics]
    go:
      - {id: beta-technical, text: All technical metrics within target range, kind: metrics,
         tables: [Technical Metrics]}
      - {id: beta-feedback, text: Positive feedback on core features, kind: manual, owners: [cto]}
  - id: limited
    name: Limited
    audience: {kind: percentage}
    steps: [{weight: 5, bake: 1d}, {weight: 100, bake: 2d}]
    min_duration: 3d
    rollback_objective: 30m
    tables: [Technical Metrics]
    go:
      - {id: limited-clean, text: No critical issues for 48 hours, kind: window,
         metric: critical_issues, threshold: "== 0", window: 48h}
triggers:
  - {id: crash-rate, text: Crash Rate > 5%, metric: crash_rate, threshold: "> 5", window: 5m}
objectives:
  backups: [{kind: full, every: 1d, retention: 7d}]
  disaster_recovery: {regions: [a, b], primary: a, rto: 30m, rpo: 1h, drill_every: 7d}
"""

GOOD = """\
observed_at: 2026-11-28T08:59:00Z
stage_started_at: 2026-11-20T09:00:00Z
metrics:
  crash_rate: 0.4
  app_load_time: {value: 2.1, observed_at: 2026-11-28T08:58:00Z}
signoffs: [beta-feedback]
"""

NOW = "2026-11-28T09:00:00Z"


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def rollout(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def metrics(tmp_path: Path, text: str, name: str = "metrics.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def evaluate_json(plan_file: Path, metrics_file: Path, *extra: str) -> dict[str, Any]:
    result = rollout(
        "--plan", plan_file, "--stage", "beta", "--metrics-file", metrics_file, "--now", NOW, "--json", *extra
    )
    assert (result.returncode, result.stderr) == (0, "")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_passing_metrics_promote(plan_file: Path, tmp_path: Path) -> None:
    data = evaluate_json(plan_file, metrics(tmp_path, GOOD))
    assert (data["decision"], data["reasons"]) == (
        "promote",
        [
            {
                "code": "ready",
                "subject": "beta/step 0",
                "message": "2 gating gates meet target, bake 1d done; ready for the next stage",
            }
        ],
    )


def test_json_shape(plan_file: Path, tmp_path: Path) -> None:
    data = evaluate_json(plan_file, metrics(tmp_path, GOOD))
    assert (sorted(data), data["gates"][1], data["criteria"][1], data["triggers"][0]) == (
        [
            "awaiting_signoff_only",
            "checklist",
            "criteria",
            "decision",
            "gates",
            "last_step",
            "now",
            "plan",
            "reasons",
            "stage",
            "step",
            "triggers",
        ],
        {
            "table": "Technical Metrics",
            "metric": "app_load_time",
            "name": "App Load Time",
            "value": 2.1,
            "unit": "s",
            "target": "< 3",
            "alert": "> 5",
            "verdict": "meets_target",
            "gating": True,
            "reason": "2.1s meets target < 3",
            "observed_at": "2026-11-28T08:58:00Z",
        },
        {
            "id": "beta-feedback",
            "text": "Positive feedback on core features",
            "kind": "manual",
            "no_go": False,
            "status": "met",
            "reason": "signed off",
            "owners": ["cto"],
        },
        {
            "id": "crash-rate",
            "text": "Crash Rate > 5%",
            "metric": "crash_rate",
            "status": "clear",
            "reason": "crash_rate = 0.4, condition > 5 clear",
            "since": None,
        },
    )


@pytest.mark.parametrize(
    ("replacement", "decision", "first_reason"),
    [
        ("  crash_rate: {phase: no_data}\n", "hold", "crash_rate: source returned no data"),
        (
            "  crash_rate: {value: 0.4, observed_at: 2026-11-28T08:00:00Z}\n",
            "hold",
            "crash_rate: stale: observed 1h ago, max age 15m",
        ),
        (
            "  crash_rate: {phase: error, message: 'connect to 127.0.0.1:9: connection refused'}\n",
            "hold",
            "crash_rate: source error: connect to 127.0.0.1:9: connection refused",
        ),
        ("", "hold", "crash_rate: no measurement of crash_rate"),
        ("  crash_rate: 2.5\n", "rollback", "crash_rate: 2.5% crosses alert > 2"),
    ],
    ids=["no data", "stale", "unreachable", "missing", "beyond alert"],
)
def test_crash_rate_evidence_decides(
    plan_file: Path, tmp_path: Path, replacement: str, decision: str, first_reason: str
) -> None:
    text = GOOD.replace("  crash_rate: 0.4\n", replacement)
    data = evaluate_json(plan_file, metrics(tmp_path, text))
    first = data["reasons"][0]
    assert (data["decision"], f"{first['subject']}: {first['message']}") == (decision, first_reason)


def test_signoff_flag_completes_the_checklist(plan_file: Path, tmp_path: Path) -> None:
    unsigned = metrics(tmp_path, GOOD.replace("signoffs: [beta-feedback]\n", ""))
    before = evaluate_json(plan_file, unsigned)
    after = evaluate_json(plan_file, unsigned, "--signoff", "beta-feedback")
    assert (before["decision"], before["checklist"], before["awaiting_signoff_only"], after["decision"]) == (
        "hold",
        ["beta-feedback"],
        True,
        "promote",
    )


def test_json_metrics_file_is_accepted(plan_file: Path, tmp_path: Path) -> None:
    document = {
        "observed_at": "2026-11-28T08:59:00Z",
        "stage_started_at": "2026-11-20T09:00:00Z",
        "metrics": {"crash_rate": 0.4, "app_load_time": {"value": 2.1}},
        "signoffs": ["beta-feedback"],
    }
    data = evaluate_json(plan_file, metrics(tmp_path, json.dumps(document), "metrics.json"))
    assert data["decision"] == "promote"


def test_stage_started_flag_overrides_the_file(plan_file: Path, tmp_path: Path) -> None:
    data = evaluate_json(plan_file, metrics(tmp_path, GOOD), "--stage-started", "2026-11-25T09:00:00Z")
    assert [(r["code"], r["message"]) for r in data["reasons"]] == [
        ("min_duration_pending", "in stage 3d of minimum 1w"),
    ]


def test_text_output_has_the_verdict_table_and_decision(
    plan_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: one line per row
    result = rollout(
        "--plan", plan_file, "--stage", "beta", "--metrics-file", metrics(tmp_path, GOOD), "--now", NOW
    )
    lines = result.stdout.splitlines()
    assert (result.returncode, lines[2].split(), lines[4].split()[:6], lines[-2:]) == (
        0,
        ["gate", "value", "target", "alert", "verdict", "reason"],
        ["Technical", "Metrics:", "Crashes", "0.4%", "<", "1"],
        [
            "decision: PROMOTE",
            "  - [ready] beta/step 0: 2 gating gates meet target, bake 1d done; ready for the next stage",
        ],
    )


def test_step_option_judges_an_earlier_step(plan_file: Path, tmp_path: Path) -> None:
    text = GOOD.replace("stage_started_at: 2026-11-20T09:00:00Z", "stage_started_at: 2026-11-27T08:00:00Z")
    result = rollout(
        "--plan", plan_file, "--stage", "limited", "--step", "0", "--metrics-file", metrics(tmp_path, text),
        "--now", NOW, "--json",
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert (data["decision"], data["step"], data["last_step"]) == ("promote", 0, False)


@pytest.mark.parametrize(
    ("args", "metrics_text", "message"),
    [
        (
            ["--stage", "gamma"],
            GOOD,
            "rollout: error: --stage: stage 'gamma' is not in plan cli-test-plan (stages: beta, limited)",
        ),
        (
            ["--stage", "beta", "--step", "1"],
            GOOD,
            "rollout: error: --step: stage beta has steps 0..0, not 1",
        ),
        (
            ["--stage", "beta", "--now", "yesterday"],
            GOOD,
            "rollout: error: --now: not a time: 'yesterday' (write 2026-11-20T09:00:00Z)",
        ),
        (
            ["--stage", "beta", "--now", "2026-11-28T09:00:00"],
            GOOD,
            "rollout: error: --now: 2026-11-28T09:00:00 needs a time zone (write it as ...Z)",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("stage_started_at: 2026-11-20T09:00:00Z\n", ""),
            "rollout: error: --stage-started: required (or stage_started_at in the metrics file)",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("  crash_rate: 0.4\n", "  crash_rate: 0.4\n  crash_rat: 1\n"),
            "rollout: error: {metrics}: metrics.crash_rat: not a metric of plan cli-test-plan",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("  crash_rate: 0.4", "  crash_rate: lots"),
            "rollout: error: {metrics}:4: metrics.crash_rate: not a finite number: 'lots'",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("{value: 2.1,", "{value: 2.1, colour: red,"),
            "rollout: error: {metrics}:5: metrics.app_load_time.colour: unknown key "
            "(expected one of: message, observed_at, phase, since, value)",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("  crash_rate: 0.4", "  crash_rate: {phase: broken}"),
            "rollout: error: {metrics}:4: metrics.crash_rate.phase: "
            "'broken' is not one of ok, no_data, error",
        ),
        (
            ["--stage", "beta"],
            GOOD.replace("signoffs: [beta-feedback]", "signoffs: [beta-technical]"),
            "rollout: error: {metrics}: signoffs: "
            "'beta-technical' is not a manual criterion of plan cli-test-plan",
        ),
        (
            ["--stage", "beta"],
            "metrics: [\n",
            "rollout: error: {metrics}:2: not valid YAML or JSON: "
            "expected the node content, but found '<stream end>'",
        ),
        (["--stage", "beta"], "", "rollout: error: {metrics}: the metrics file is empty"),
    ],
    ids=[
        "unknown stage",
        "step past the stage",
        "unreadable now",
        "naive now",
        "no stage start",
        "unknown metric",
        "value not a number",
        "unknown entry key",
        "unknown phase",
        "sign-off of a non-manual criterion",
        "syntax error",
        "empty file",
    ],
)
def test_bad_input_exits_2_with_one_line(
    plan_file: Path, tmp_path: Path, args: list[str], metrics_text: str, message: str
) -> None:
    metrics_file = metrics(tmp_path, metrics_text)
    extra = [] if "--now" in args else ["--now", NOW]
    result = rollout("--plan", plan_file, "--metrics-file", metrics_file, *extra, *args)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        message.format(plan=plan_file, metrics=metrics_file) + "\n",
    )


def test_missing_metrics_file_exits_2(plan_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = rollout("--plan", plan_file, "--stage", "beta", "--metrics-file", missing, "--now", NOW)
    assert (result.returncode, result.stderr) == (2, f"rollout: error: {missing}: metrics file not found\n")


def test_missing_plan_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "plan.yaml"
    result = rollout("--plan", missing, "--stage", "beta", "--metrics-file", metrics(tmp_path, GOOD))
    assert (result.returncode, result.stderr) == (2, f"rollout: error: {missing}: no such plan file\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_live_provider_holds_never_promotes(plan_file: Path) -> None:
    """No --metrics-file: the real Prometheus provider asks a loopback port where nothing listens."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ROLLOUT_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "ROLLOUT_PROVIDER_ATTEMPTS": "1",
        "ROLLOUT_PROVIDER_TIMEOUT": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "evaluate", "--plan", str(plan_file),
         "--stage", "beta", "--now", NOW, "--stage-started", "2026-11-20T09:00:00Z",
         "--signoff", "beta-feedback", "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert (result.returncode, data["decision"], [g["verdict"] for g in data["gates"]]) == (
        0,
        "hold",
        ["error", "error"],
    )


# --- comparison gates: per-version counts in the metrics file -----------------------------------------

COMPARED_PLAN = PLAN.replace(
    '{metric: crash_rate, target: "< 1", alert: "> 2"}',
    '{metric: crash_rate, target: "< 1", alert: "> 2", comparison: {kind: rate, alpha: 0.01}}',
)


def counts_file(tmp_path: Path, canary_errors: int, minutes: int) -> Path:
    """A metrics file with healthy absolute values and a minute-by-minute count history.

    1% of traffic on the canary, a 1% baseline crash rate; the canary has ``canary_errors`` per
    1000 (10 is no regression).
    """
    lines = [
        "observed_at: 2026-11-28T08:59:00Z",
        "stage_started_at: 2026-11-28T07:00:00Z",
        "step_started_at: 2026-11-27T07:00:00Z",
        "metrics: {crash_rate: 0.4, app_load_time: 2.1}",
        "comparisons:",
        "  crash_rate:",
    ]
    for minute in range(60 - minutes, 60):  # the newest at 08:59, a minute before NOW
        lines.append(
            f"    - {{observed_at: 2026-11-28T08:{minute:02d}:00Z, canary_events: {canary_errors}, "
            "canary_trials: 1000, baseline_events: 990, baseline_trials: 99000}"
        )
    return metrics(tmp_path, "\n".join(lines) + "\n")


def evaluate_limited(plan_file: Path, metrics_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return rollout(
        "--plan", plan_file, "--stage", "limited", "--step", "0", "--metrics-file", metrics_file,
        "--now", NOW, *extra,
    )  # fmt: skip


def test_comparison_evidence_in_json(tmp_path: Path) -> None:
    plan_file = metrics(tmp_path, COMPARED_PLAN, "plan.yaml")
    result = evaluate_limited(plan_file, counts_file(tmp_path, 30, 30), "--json")
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    crash = data["gates"][0]
    evidence = crash["comparison"]
    assert (data["decision"], data["reasons"][0]["code"], crash["verdict"], crash["comparison_verdict"]) == (
        "rollback",
        "gate_beyond_alert",
        "beyond_alert",
        "beyond_alert",
    )
    counts = (evidence["canary_events"], evidence["baseline_trials"])
    assert (evidence["verdict"], evidence["ratio"], *counts) == (
        "regression",
        3.0,
        900.0,
        2_970_000.0,
    )
    assert evidence["e_value"] >= 100 and evidence["observations"] == 30
    assert crash["reason"] == f"vs baseline: {evidence['summary']}"
    # The gate without a comparison has no comparison keys.
    assert "comparison" not in data["gates"][1]


def test_comparison_evidence_in_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: one line per row
    plan_file = metrics(tmp_path, COMPARED_PLAN, "plan.yaml")
    as_json = json.loads(evaluate_limited(plan_file, counts_file(tmp_path, 10, 59), "--json").stdout)
    result = evaluate_limited(plan_file, counts_file(tmp_path, 10, 59))
    assert (result.returncode, result.stderr) == (0, "")
    row = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("vs baseline (rate)"))
    summary = as_json["gates"][0]["comparison"]["summary"]
    assert summary.startswith("no_regression: rate ratio 1.00x")
    assert row.split()[3:9] == ["1.00x", "<", "1.5x", ">", "1x", "@0.01"]
    assert row.rstrip().endswith(f"meets_target  {summary}")
    assert "decision: PROMOTE" in result.stdout


def test_too_few_counts_hold(tmp_path: Path) -> None:
    plan_file = metrics(tmp_path, COMPARED_PLAN, "plan.yaml")
    data = json.loads(evaluate_limited(plan_file, counts_file(tmp_path, 10, 3), "--json").stdout)
    assert (data["decision"], data["gates"][0]["verdict"], data["gates"][0]["comparison"]["verdict"]) == (
        "hold",
        "between",
        "continue",
    )


def test_missing_counts_never_promote(tmp_path: Path) -> None:
    plan_file = metrics(tmp_path, COMPARED_PLAN, "plan.yaml")
    result = evaluate_limited(
        plan_file, metrics(tmp_path, GOOD.replace("2026-11-20T09:00:00Z", "2026-11-28T07:00:00Z")), "--json"
    )
    crash = json.loads(result.stdout)["gates"][0]
    assert (crash["verdict"], crash["comparison"], crash["comparison_reason"]) == (
        "no_data",
        None,
        "no per-version rate counts of crash_rate in this stage to compare",
    )


def test_counts_for_a_metric_without_comparison_exit_2(tmp_path: Path) -> None:
    plan_file = metrics(tmp_path, PLAN, "plan.yaml")
    path = counts_file(tmp_path, 10, 3)
    result = evaluate_limited(plan_file, path)
    assert (result.returncode, result.stderr) == (
        2,
        f"rollout: error: {path}: comparisons.crash_rate: no gate of plan cli-test-plan compares it\n",
    )


@pytest.mark.parametrize(
    ("replacement", "status"),
    [("  crash_rate: 0.4\n", 0), ("", 1), ("  crash_rate: 2.5\n", 3)],
    ids=["promote", "hold", "rollback"],
)
def test_exit_code_flag_gives_the_decision_as_status(
    plan_file: Path, tmp_path: Path, replacement: str, status: int
) -> None:
    text = GOOD.replace("  crash_rate: 0.4\n", replacement)
    args = ("--plan", plan_file, "--stage", "beta", "--metrics-file", metrics(tmp_path, text), "--now", NOW)
    with_flag = rollout(*args, "--exit-code")
    without = rollout(*args)
    assert (with_flag.returncode, without.returncode, with_flag.stdout) == (status, 0, without.stdout)
