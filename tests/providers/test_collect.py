"""collect(): every metric a stage needs, each from its own backend (moto, PostgreSQL, sign-offs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devenv.services import free_port
from rollout_policies.core.measurement import Phase
from rollout_policies.errors import UserError
from rollout_policies.plan.model import (
    Audience,
    BackupObjective,
    Criterion,
    CriterionKind,
    Direction,
    DisasterRecovery,
    Gate,
    GateTable,
    Metric,
    MetricSource,
    Objectives,
    Plan,
    Stage,
    Threshold,
    TrafficStep,
    Trigger,
)
from rollout_policies.providers import ProviderSettings, collect, metrics_for_stage

NOW = datetime.now(UTC).replace(microsecond=0)


def metric(metric_id: str, source: MetricSource) -> Metric:
    return Metric(id=metric_id, name=metric_id, unit="%", direction=Direction.LOWER_IS_BETTER, source=source)


def build_plan(crash_provider: str = "prometheus") -> Plan:
    metrics = (
        metric(
            "crash_rate", MetricSource(provider=crash_provider, query="sum(markethub_crash_rate_percent)")
        ),
        metric(
            "retention_d1", MetricSource(provider="sql", query="SELECT rate, computed_at FROM retention_d1")
        ),
        metric("feedback_positive", MetricSource(provider="manual", query="beta_feedback")),
        metric(
            "lb_failures",
            MetricSource(
                provider="cloudwatch",
                query="UnhealthyHostCount",
                options={"namespace": "markethub/collect", "stat": "Maximum"},
            ),
        ),
        metric(
            "critical_issues", MetricSource(provider="prometheus", query="sum(markethub_critical_issues)")
        ),
        metric("unused_in_beta", MetricSource(provider="json_http", query="http://127.0.0.1:9/x")),
    )
    beta = Stage(
        id="beta",
        name="Beta",
        audience=Audience(kind="cohort", size=50),
        steps=(TrafficStep(weight=1),),
        min_duration="2w",
        rollback_objective="30m",
        tables=(
            GateTable(
                name="Technical Metrics",
                gates=(
                    Gate(metric="crash_rate", target=Threshold.model_validate("< 1")),
                    Gate(metric="retention_d1", monitor_only=True),
                ),
            ),
        ),
        go=(
            Criterion(
                id="no-critical",
                text="No critical issues for 48 hours",
                kind=CriterionKind.WINDOW,
                metric="critical_issues",
                threshold=Threshold.model_validate("== 0"),
                window="48h",
            ),
            Criterion(
                id="feedback",
                text="Positive user feedback",
                kind=CriterionKind.MANUAL,
                metric="feedback_positive",
                owners=("product",),
            ),
        ),
    )
    return Plan(
        name="collect-test",
        service="markethub",
        decision_authority=("release-manager",),
        metrics=metrics,
        stages=(beta,),
        triggers=(
            Trigger(
                id="crash",
                text="Crash rate > 5% within 5 minutes",
                metric="crash_rate",
                threshold=Threshold.model_validate("> 5"),
                window="5m",
            ),
            Trigger(
                id="lb",
                text="Load balancer failures",
                metric="lb_failures",
                threshold=Threshold.model_validate("> 0"),
                window="1m",
            ),
        ),
        objectives=Objectives(
            backups=(BackupObjective(kind="full", every="1d", retention="30d"),),
            disaster_recovery=DisasterRecovery(
                regions=("us-east-1", "eu-west-1"), primary="us-east-1", rto="1h", rpo="1h", drill_every="30d"
            ),
        ),
    )


@pytest.fixture(scope="module")
def backends(moto_server, postgres):
    moto_server.client("cloudwatch").put_metric_data(
        Namespace="markethub/collect",
        MetricData=[
            {"MetricName": "UnhealthyHostCount", "Timestamp": NOW - timedelta(seconds=20), "Value": 0.0}
        ],
    )
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS retention_d1")
        connection.execute(
            "CREATE TABLE retention_d1 AS SELECT 44.0 AS rate, %s::timestamptz AS computed_at", (NOW,)
        )
    return ProviderSettings(
        prometheus_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: its metrics must be errors
        cloudwatch_endpoint_url=moto_server.endpoint_url,
        cloudwatch_region="us-east-1",
        sql_dsn=postgres.dsn,
        signoffs={"beta_feedback": 1},
        attempts=1,
    )


def test_metrics_for_stage_are_gates_then_criteria_then_triggers_once_each():
    plan = build_plan()

    assert metrics_for_stage(plan, plan.stage("beta")) == (
        "crash_rate",
        "retention_d1",
        "critical_issues",
        "feedback_positive",
        "lb_failures",
    )


@pytest.mark.services
def test_collect_measures_each_metric_from_its_backend(backends, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    measurements = collect(build_plan(), "beta", NOW, backends)

    by_metric = {m.metric: (m.phase, m.value) for m in measurements}
    assert by_metric == {
        "crash_rate": (Phase.ERROR, None),
        "retention_d1": (Phase.OK, 44.0),
        "critical_issues": (Phase.ERROR, None),
        "feedback_positive": (Phase.OK, 1.0),
        "lb_failures": (Phase.OK, 0.0),
    }


def test_unconfigured_backend_gives_errors_naming_the_setting():
    settings = ProviderSettings(
        signoffs={"beta_feedback": 1},
        # Never real AWS from a test: point CloudWatch at a port where nothing listens.
        cloudwatch_endpoint_url=f"http://127.0.0.1:{free_port()}",
        attempts=1,
    )

    measurements = {m.metric: m for m in collect(build_plan(), "beta", NOW, settings)}

    assert measurements["crash_rate"].phase is Phase.ERROR
    assert "ROLLOUT_PROMETHEUS_URL" in measurements["crash_rate"].message
    assert "ROLLOUT_SQL_DSN" in measurements["retention_d1"].message
    assert measurements["feedback_positive"].phase is Phase.OK
    assert measurements["lb_failures"].phase is Phase.ERROR


def test_unknown_stage_is_a_user_error():
    with pytest.raises(UserError, match=r"^stage 'gamma' is not in plan collect-test \(stages: beta\)$"):
        collect(build_plan(), "gamma", NOW, ProviderSettings())


def test_unknown_provider_in_the_plan_is_a_user_error():
    with pytest.raises(UserError, match="unknown metric provider 'datadog'"):
        collect(build_plan(crash_provider="datadog"), "beta", NOW, ProviderSettings())


def test_shipped_plan_with_every_backend_down_measures_nothing_as_ok(monkeypatch):
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
    from rollout_policies.providers import PROVIDERS

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    down = f"http://127.0.0.1:{free_port()}"
    settings = ProviderSettings(
        prometheus_url=down,
        cloudwatch_endpoint_url=down,
        sql_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/analytics",
        json_base_urls={"crash_reporter": down, "surveys": down, "issue_tracker": down},
        attempts=1,
    )
    plan = load_plan(DEFAULT_PLAN, providers=tuple(PROVIDERS))

    measured = [m for stage in plan.stages for m in collect(plan, stage.id, NOW, settings)]

    assert {m.phase for m in measured} <= {Phase.ERROR, Phase.NO_DATA}
    # Every source is well-formed for its provider: the failures are the unreachable servers.
    assert [
        m.message
        for m in measured
        if "cannot reach" not in m.message
        and "Could not connect" not in m.message
        and "awaiting a sign-off" not in m.message
    ] == []
