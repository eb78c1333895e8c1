"""`rollout plan show` and the shipped plan's sources: what a reader and the providers get from the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollout_policies.cli.plan_cmd import provider_names
from rollout_policies.plan.export import human_duration, plan_to_data
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from rollout_policies.providers import PROVIDERS
from rollout_policies.providers.cloudwatch import metric_data_request
from rollout_policies.providers.json_http import JsonHttpProvider

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


def rollout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_show_prints_every_stage_gate_and_trigger(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: one line per table row
    result = rollout("plan", "show")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for stage in plan.stages:
        assert f"\n{stage.id}: {stage.name}\n" in out
    gate_lines = out.split("\nGates\n")[1].split("\nRollback triggers\n")[0].splitlines()[3:]
    cells = {" ".join(line.split()) for line in out.splitlines()}
    unique_gates = {(t.name, g.metric) for s in plan.stages for t in s.tables for g in t.gates}
    assert len([line for line in gate_lines if line.strip()]) == len(unique_gates)
    for stage in plan.stages:
        for table in stage.tables:
            for gate in table.gates:
                assert any(
                    table.name in line and plan.metric(gate.metric).name in line for line in gate_lines
                ), gate
    for trigger in plan.triggers:
        assert trigger.text in out
    assert (
        "Infrastructure Metrics Load Balancer Health >= 100 < 99 % cloudwatch no - "
        "limited, medium, majority, full" in cells
    )
    assert "Database Connection Loss db_connected < 1 immediately prometheus" in cells
    assert "limited percentage, 1,000 users 2% for 48h -> 5% for 48h -> 10% for 10d 2w 30m" in cells
    assert "social_sharing=limited (logging only)" in out
    assert "[window] No critical issues for 48 hours (critical_issues == 0 throughout the last 48h)" in out


def test_show_json_is_the_whole_plan_and_loads_back(plan: Plan) -> None:
    result = rollout("plan", "show", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert Plan.model_validate(data) == plan
    limited = data["stages"][1]
    assert limited["steps"] == [
        {"weight": 2.0, "bake": "48h"},
        {"weight": 5.0, "bake": "48h"},
        {"weight": 10.0, "bake": "10d"},
    ]
    assert limited["go"][3]["window"] == "48h"
    assert limited["tables"][0]["gates"][0] == {
        "metric": "crash_rate",
        "target": "< 1",
        "alert": "> 2",
        "monitor_only": False,
        "note": "",
        "comparison": {
            "kind": "rate",
            "alpha": 0.01,
            "margin": 0.0,
            "tolerance": 1.5,
            "quantile": None,
            "dispersion": None,
            "events": "sum by (track, segment) (increase(markethub_crashes_total[75s]))",
            "trials": "sum by (track, segment) (increase(markethub_sessions_total[75s]))",
            "histogram": None,
            "label": "track",
            "canary": "candidate",
            "baseline": "stable",
            "interval": "1m",
            "scrape_interval": "15s",
            "segment_label": "segment",
        },
    }
    assert [t["window"] for t in data["triggers"]] == ["5m", "2m", "1m", "0s"]


def test_export_matches_the_cli(plan: Plan) -> None:
    assert plan_to_data(plan) == json.loads(rollout("plan", "show", "--json").stdout)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (86400, "1d"),
        (172800, "48h"),
        (864000, "10d"),
        (1209600, "2w"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_cli_checks_providers_against_the_registry() -> None:
    assert set(provider_names()) == set(PROVIDERS) | {"manual"}


def test_every_provider_in_the_plan_is_registered(plan: Plan) -> None:
    assert {metric.source.provider for metric in plan.metrics} <= set(PROVIDERS)


def test_cloudwatch_sources_build_requests(plan: Plan) -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    sources = [m.source for m in plan.metrics if m.source.provider == "cloudwatch"]
    assert len(sources) == 2
    for source in sources:
        request = metric_data_request(source, now)
        assert request["MetricDataQueries"][0]["MetricStat"]["Metric"]["Namespace"].startswith("AWS/")


def test_json_http_sources_resolve_against_named_bases(plan: Plan) -> None:
    bases = {name: f"https://{name}.example" for name in ("crash_reporter", "surveys", "issue_tracker")}
    provider = JsonHttpProvider(base_urls=bases)
    sources = [m.source for m in plan.metrics if m.source.provider == "json_http"]
    assert len(sources) == 5
    for source in sources:
        assert provider.url_for(source).startswith(bases[source.options["base"]] + "/api/v1/")
        assert source.options["field"]


def test_sql_sources_take_now_as_their_only_parameter(plan: Plan) -> None:
    """psycopg formats ``%(now)s`` pyformat-style; a stray percent sign would break the query."""
    for metric in plan.metrics:
        if metric.source.provider == "sql":
            metric.source.query % {"now": "'2026-11-25T12:00:00Z'"}  # raises on a stray %
            assert "%(now)s" in metric.source.query, metric.id
