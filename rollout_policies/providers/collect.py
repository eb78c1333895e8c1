"""Measure every metric one stage needs (its gates, its go/no-go criteria, the rollback triggers),
and fetch the per-version samples its comparison gates read."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from rollout_policies.core.measurement import Evidence, Measurement
from rollout_policies.core.ranges import within_range
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Criterion, CriterionKind, Gate, Plan, Stage
from rollout_policies.providers.base import ComparisonFetch, ComparisonProvider, MetricProvider, as_utc
from rollout_policies.providers.drill_reports import read_drill_results
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.registry import PROVIDERS, comparison_provider_for, provider_for
from rollout_policies.providers.settings import ProviderSettings

# Comparison queries are PromQL whatever provider a metric's own value comes from.
COMPARISONS_FROM = "prometheus"
_WORKERS = 8  # queries wait on the network, not the CPU; a few at once keeps a stage under seconds


def metrics_for_stage(plan: Plan, stage: Stage) -> tuple[str, ...]:
    """Metric ids in the order they first appear: gates, then criteria, then rollback triggers."""
    ids: list[str] = [gate.metric for gate in stage.gates]
    ids += [criterion.metric for criterion in (*stage.go, *stage.no_go) if criterion.metric]
    ids += [trigger.metric for trigger in plan.triggers]
    return tuple(dict.fromkeys(ids))


def collect(
    plan: Plan, stage_id: str, now: datetime, settings: ProviderSettings | None = None
) -> tuple[Measurement, ...]:
    """One measurement per metric the stage needs, in ``metrics_for_stage`` order.

    An unknown stage, metric or provider name is a UserError (the plan is wrong). A backend that is
    not configured or not reachable gives error measurements for its metrics and the rest are still
    measured: a rollback trigger on Prometheus must not wait on a missing survey-tool URL. A value
    outside its unit's valid range is an error measurement too, whichever provider read it
    (``core.ranges``: the same rule the decision core applies to metrics files).
    """
    settings = settings or ProviderSettings.from_env()
    now = as_utc(now)
    stage = plan.stage(stage_id)
    metrics = []
    for metric_id in metrics_for_stage(plan, stage):
        try:
            metrics.append(plan.metric(metric_id))
        except KeyError:
            raise UserError(
                f"stage {stage_id!r} uses metric {metric_id!r}, which the plan does not define"
            ) from None

    providers: dict[str, MetricProvider | UserError] = {}
    for name in dict.fromkeys(metric.source.provider for metric in metrics):
        if name not in PROVIDERS:
            provider_for(name)  # raises the registry's UserError naming the known providers
        try:
            providers[name] = provider_for(name, **settings.for_provider(name))
        except UserError as err:  # e.g. no Prometheus URL configured: data for the verdict, not a crash
            providers[name] = err

    def measure_one(index: int) -> Measurement:
        metric = metrics[index]
        provider = providers[metric.source.provider]
        if isinstance(provider, UserError):
            return Measurement.error(metric.id, now, str(provider))
        return within_range(provider.query(metric.source, now, metric=metric.id), metric)

    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="collect") as pool:
        return tuple(pool.map(measure_one, range(len(metrics))))


def comparison_gates(stage: Stage) -> tuple[Gate, ...]:
    """The stage's gates with a comparison, one per metric (the first in plan order): samples are
    keyed by metric, so a second comparison of the same metric would read the same samples."""
    first: dict[str, Gate] = {}
    for gate in stage.gates:
        if gate.comparison is not None and gate.metric not in first:
            first[gate.metric] = gate
    return tuple(first.values())


def collect_comparisons(
    plan: Plan,
    stage_id: str,
    now: datetime,
    settings: ProviderSettings | None = None,
    *,
    since: datetime | None = None,
) -> tuple[ComparisonFetch, ...]:
    """Per-version samples for each comparison gate of the stage, from Prometheus range queries
    (``since``: when the stage started; the whole stage and a day of the baseline before it are read,
    and segments the stage keeps from the candidate are dropped from the baseline too).

    Comparison queries are PromQL whatever provider the metric's own value comes from (the crash
    rate's value is the crash reporter's, its per-version counts Prometheus's). A comparison that
    names no queries is skipped: its samples can only come from a metrics file. A missing URL or a
    dead server gives fetches with an ``error`` measurement and no samples, never a raise.
    """
    settings = settings or ProviderSettings.from_env()
    now = as_utc(now)
    stage = plan.stage(stage_id)
    gates = [gate for gate in comparison_gates(stage) if gate.comparison and gate.comparison.live_queries]
    if not gates:
        return ()
    try:
        provider: ComparisonProvider | UserError = comparison_provider_for(
            COMPARISONS_FROM, **settings.for_provider(COMPARISONS_FROM)
        )
    except UserError as err:  # no Prometheus URL: the comparisons have no data source, the rest goes on
        provider = err

    def fetch(gate: Gate) -> ComparisonFetch:
        assert gate.comparison is not None
        metric = plan.metric(gate.metric)
        if isinstance(provider, UserError):
            return ComparisonFetch(gate.metric, Measurement.error(gate.metric, now, str(provider)))
        return provider.compare(
            gate.comparison,
            now,
            metric=gate.metric,
            since=since,
            max_age=metric.source.max_age,
            exclude_segments=stage.audience.exclude_segments,
        )

    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="compare") as pool:
        return tuple(pool.map(fetch, gates))


def window_criteria(plan: Plan, stage: Stage) -> tuple[Criterion, ...]:
    """The stage's window criteria ("no critical issues for 48 hours") whose metric Prometheus
    holds a history of: those are judged from a range query over the window."""
    return tuple(
        criterion
        for criterion in (*stage.go, *stage.no_go)
        if criterion.kind is CriterionKind.WINDOW
        and criterion.metric is not None
        and criterion.threshold is not None
        and criterion.window
        and plan.metric(criterion.metric).source.provider == "prometheus"
    )


def collect_windows(
    plan: Plan, stage_id: str, now: datetime, settings: ProviderSettings | None = None
) -> tuple[Measurement, ...]:
    """The history over its window of every window criterion's metric (Prometheus range queries).

    A window criterion is judged at every moment of its window, so one instant sample can never
    make it; this history can. A window criterion on another provider gets none and stays UNKNOWN
    (it holds) until its source can give a history: missing data never counts as a clean window.
    """
    settings = settings or ProviderSettings.from_env()
    now = as_utc(now)
    stage = plan.stage(stage_id)
    criteria = window_criteria(plan, stage)
    if not criteria:
        return ()
    try:
        provider = PrometheusProvider(**settings.for_provider("prometheus"))
    except UserError as err:
        return tuple(Measurement.error(c.metric or c.id, now, str(err)) for c in criteria)
    found: list[Measurement] = []
    for criterion in criteria:
        assert criterion.metric is not None and criterion.threshold is not None and criterion.window
        source = plan.metric(criterion.metric).source
        found += provider.window(
            source, criterion.threshold.op, now - criterion.window, now, metric=criterion.metric
        )
    return tuple(found)


def collect_evidence(
    plan: Plan,
    stage_id: str,
    now: datetime,
    settings: ProviderSettings | None = None,
    *,
    since: datetime | None = None,
    signoffs: Iterable[str] = (),
    drill_reports: Path | None = None,
) -> Evidence:
    """``collect``'s measurements, ``collect_windows``' histories and ``collect_comparisons``' samples
    as the core's ``Evidence``.

    A failed comparison fetch adds no samples, so its gate reads ``no_data`` and holds; the fetch's
    own message is in ``collect_comparisons`` (the core has no slot for it yet). The window
    histories go first, so at an equal time the instant measurement is the metric's latest.
    ``drill_reports`` is the repository's ``reports/drills`` folder, for drill criteria.
    """
    settings = settings or ProviderSettings.from_env()
    measurements = collect(plan, stage_id, now, settings)
    windows = collect_windows(plan, stage_id, now, settings)
    fetches = collect_comparisons(plan, stage_id, now, settings, since=since)
    drills = read_drill_results(drill_reports) if drill_reports is not None else ()
    return Evidence.of(
        [*windows, *measurements], signoffs, samples=(s for f in fetches for s in f.samples), drills=drills
    )
