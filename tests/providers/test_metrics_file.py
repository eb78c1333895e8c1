"""The metrics-file provider: what each form of entry becomes, and the file answering as a backend."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollout_policies.core import LatencySample, Measurement, Phase, RateSample
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import ComparisonKind, GateComparison, MetricSource
from rollout_policies.providers.metrics_file import MetricsFileProvider, load_metrics_file

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 28, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("0.4", [Measurement.ok("m", 0.4, NOW)]),
        ("{value: 2, observed_at: 2026-11-28T08:30:00Z}", [Measurement.ok("m", 2, t(8, 30))]),
        ("{value: 2, observed_at: '2026-11-28T10:30:00+02:00'}", [Measurement.ok("m", 2, t(8, 30))]),
        ("{phase: error, message: refused}", [Measurement.error("m", NOW, "refused")]),
        ("{phase: no_data}", [Measurement.no_data("m", NOW)]),
        (
            "{value: 0, since: 2026-11-26T09:00:00Z}",
            [Measurement.ok("m", 0, NOW, since=datetime(2026, 11, 26, 9, tzinfo=UTC))],
        ),
        (
            "[{value: 1, observed_at: 2026-11-28T08:00:00Z}, {value: 3, observed_at: 2026-11-28T08:05:00Z}]",
            [Measurement.ok("m", 1, t(8)), Measurement.ok("m", 3, t(8, 5))],
        ),
    ],
    ids=["bare number", "value and time", "offset time", "error", "no data", "count over a span", "history"],
)
def test_entry_becomes_measurements(tmp_path: Path, entry: str, expected: list[Measurement]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"metrics:\n  m: {entry}\n")
    assert list(load_metrics_file(path, now=NOW).measurements) == expected


def test_file_observed_at_is_the_default_time(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("observed_at: 2026-11-28T07:00:00Z\nmetrics: {m: 1}\n")
    assert load_metrics_file(path, now=NOW).measurements == (Measurement.ok("m", 1, t(7)),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metrics: {m: {phase: error, value: 3}}\n",
            "m.yaml:1: metrics.m.value: phase error carries no value",
        ),
        ("metrics: {m: {phase: ok}}\n", "m.yaml:1: metrics.m: phase ok needs a value"),
        ("metrics: {m: true}\n", "m.yaml:1: metrics.m: not a finite number: True"),
        ("metrics: {m: []}\n", "m.yaml:1: metrics.m: an empty list: give at least one measurement"),
        (
            "metrics:\n  m: {value: 1, observed_at: 2026-11-28}\n",
            "m.yaml:2: metrics.m.observed_at: 2026-11-28 is a date; give a time such as 2026-11-28T09:00:00Z",
        ),
        (
            "metrics:\n  m: {value: 1, since: 2026-11-29T00:00:00Z}\n",
            "m.yaml:2: metrics.m.since: is after observed_at",
        ),
        (
            "metrics: {m: 1}\nextra: 1\n",
            "m.yaml:2: extra: unknown key "
            "(expected one of: comparisons, metrics, observed_at, signoffs, "
            "stage_started_at, step_started_at)",
        ),
        ("observed_at: 1\n", "m.yaml:1: 'metrics' is missing"),
        ("- 1\n", "m.yaml:1: the top level must be a mapping with a 'metrics' key"),
    ],
    ids=[
        "value with error phase",
        "ok without value",
        "boolean value",
        "empty history",
        "date without time",
        "since after observed_at",
        "unknown top-level key",
        "no metrics",
        "not a mapping",
    ],
)
def test_bad_file_is_one_line_user_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_metrics_file(path, now=NOW)
    assert str(caught.value) == f"{tmp_path}/{message}"


# --- comparison samples -------------------------------------------------------------------------------

COMPARISONS = """\
metrics: {m: 1}
comparisons:
  api_error_rate:
    - {observed_at: 2026-11-28T08:55:00Z, canary_events: 3, canary_trials: 1000,
       baseline_events: 250, baseline_trials: 99000}
  api_response_time:
    edges: [0.1, 0.5]
    samples:
      - {observed_at: 2026-11-28T08:56:00Z, canary: [5, 3, 1], baseline: [500, 300, 100]}
"""


def test_comparisons_become_samples(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(COMPARISONS)
    loaded = load_metrics_file(path, now=NOW)
    assert loaded.samples == (
        RateSample("api_error_rate", t(8, 55), 3, 1000, 250, 99000),
        LatencySample("api_response_time", t(8, 56), (0.1, 0.5), (5, 3, 1), (500, 300, 100)),
    )
    assert loaded.evidence().samples_of("api_response_time") == loaded.samples[1:]


@pytest.mark.parametrize(
    ("comparisons", "message"),
    [
        ("[1]", "m.yaml:2: comparisons: must be a mapping of metric id to samples"),
        ("{r: 3}", "m.yaml:2: comparisons.r: must be a list of rate counts or a mapping {edges, samples}"),
        (
            "{r: [{observed_at: 2026-11-28T08:55:00Z, canary_events: 3, canary_trials: 1000,"
            " baseline_events: 1}]}",
            "m.yaml:2: comparisons.r[0]: baseline_trials is missing",
        ),
        (
            "{r: [{observed_at: 2026-11-28T08:55:00Z, canary_events: 3, canary_trials: 2, baseline_events: 1,"
            " baseline_trials: 9}]}",
            "m.yaml:2: comparisons.r[0]: events cannot exceed trials",
        ),
        (
            "{r: [{observed_at: 2026-11-28T08:55:00Z, canary_events: -1, canary_trials: 2,"
            " baseline_events: 1, baseline_trials: 9}]}",
            "m.yaml:2: comparisons.r[0]: canary_events must be a finite number, at least 0",
        ),
        (
            "{r: [{canary_events: 1, canary_trials: 2, baseline_events: 1, baseline_trials: 9}]}",
            "m.yaml:2: comparisons.r[0]: observed_at is missing",
        ),
        ("{l: {edges: [0.1, 0.5]}}", "m.yaml:2: comparisons.l: a latency comparison needs samples"),
        (
            "{l: {edges: [0.5, 0.1], samples: [{observed_at: 2026-11-28T08:55:00Z, canary: [1, 1, 1],"
            " baseline: [1, 1, 1]}]}}",
            "m.yaml:2: comparisons.l.samples[0]: edges must be at least two increasing bucket bounds",
        ),
        (
            "{l: {edges: [0.1, 0.5], samples: [{observed_at: 2026-11-28T08:55:00Z, canary: [1, 1],"
            " baseline: [1, 1, 1]}]}}",
            "m.yaml:2: comparisons.l.samples[0]: canary needs 3 counts (one per edge, then +Inf)",
        ),
        (
            "{l: {edges: [0.1, 0.5], samples: [{observed_at: 2026-11-28T08:55:00Z, canary: [1, x, 1],"
            " baseline: [1, 1, 1]}]}}",
            "m.yaml:2: comparisons.l.samples[0].canary[1]: not a finite number: 'x'",
        ),
    ],
)
def test_bad_comparisons_are_one_line_user_errors(tmp_path: Path, comparisons: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"metrics: {{m: 1}}\ncomparisons: {comparisons}\n")
    with pytest.raises(UserError) as caught:
        load_metrics_file(path, now=NOW)
    assert str(caught.value) == f"{tmp_path}/{message}"


# ------------------------------------------------------------------ the file as a provider


def _provider(tmp_path: Path, text: str) -> MetricsFileProvider:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return MetricsFileProvider(path=path)


def _source(**fields: object) -> MetricSource:
    return MetricSource.model_validate({"provider": "metrics_file", "max_age": "15m", **fields})


def test_query_reads_the_newest_entry_of_the_metric(tmp_path: Path) -> None:
    provider = _provider(
        tmp_path,
        "metrics:\n  m:\n    - {value: 1, observed_at: 2026-11-28T08:50:00Z}\n"
        "    - {value: 3, observed_at: 2026-11-28T08:55:00Z}\n",
    )

    assert provider.query(_source(), NOW, metric="m") == Measurement.ok("m", 3, t(8, 55))


def test_query_reads_the_key_the_source_names(tmp_path: Path) -> None:
    provider = _provider(tmp_path, "metrics: {finance_conversion: 2.5}\n")

    measurement = provider.query(_source(options={"key": "finance_conversion"}), NOW, metric="conversion")

    assert measurement == Measurement.ok("conversion", 2.5, NOW)


@pytest.mark.parametrize(
    ("text", "phase", "message"),
    [
        ("metrics: {other: 1}\n", Phase.NO_DATA, "metrics_file: {path} has no entry for 'm'"),
        ("metrics: {m: {phase: error, message: refused}}\n", Phase.ERROR, "metrics_file: refused"),
        ("metrics: {m: {phase: no_data}}\n", Phase.NO_DATA, "metrics_file: m: phase no_data"),
        (
            "metrics: [\n",
            Phase.ERROR,
            "metrics_file: {path}:2: not valid YAML or JSON: "
            "expected the node content, but found '<stream end>'",
        ),
    ],
    ids=["absent", "error entry", "no-data entry", "bad file"],
)
def test_query_never_raises(tmp_path: Path, text: str, phase: Phase, message: str) -> None:
    provider = _provider(tmp_path, text)

    measurement = provider.query(_source(), NOW, metric="m")

    assert (measurement.phase, measurement.message) == (phase, message.format(path=tmp_path / "m.yaml"))


def test_query_judges_staleness_like_every_backend(tmp_path: Path) -> None:
    provider = _provider(tmp_path, "metrics: {m: {value: 1, observed_at: 2026-11-28T08:00:00Z}}\n")

    measurement = provider.query(_source(), NOW, metric="m")

    assert measurement.phase is Phase.NO_DATA
    assert measurement.message.startswith("metrics_file: stale: newest value is from 2026-11-28T08:00:00")


def test_compare_gives_the_samples_since_the_stage_started(tmp_path: Path) -> None:
    provider = _provider(tmp_path, COMPARISONS)
    settings = GateComparison(kind=ComparisonKind.RATE)

    fetch = provider.compare(settings, NOW, metric="api_error_rate", since=t(8, 50))
    later = provider.compare(settings, NOW, metric="api_error_rate", since=t(8, 56))

    assert fetch.samples == (RateSample("api_error_rate", t(8, 55), 3, 1000, 250, 99000),)
    assert fetch.measurement == Measurement.ok("api_error_rate", 1, t(8, 55))
    assert later.samples == ()
    assert later.measurement.phase is Phase.NO_DATA


def test_evidence_is_the_whole_file_checked_against_the_plan(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("metrics: {crash_rate: 0.1, typo_rate: 1}\n")
    provider = MetricsFileProvider(path=tmp_path / "m.yaml", now=NOW)
    plan = load_plan(DEFAULT_PLAN)

    with pytest.raises(UserError, match=r"m\.yaml: metrics\.typo_rate: not a metric of plan"):
        provider.evidence(plan)
