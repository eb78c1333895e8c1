"""Measure every metric one stage needs (its gates, its go/no-go criteria, the rollback triggers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from rollout_policies.core.measurement import Measurement
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan, Stage
from rollout_policies.providers.base import MetricProvider, as_utc
from rollout_policies.providers.registry import PROVIDERS, provider_for
from rollout_policies.providers.settings import ProviderSettings

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
    measured: a rollback trigger on Prometheus must not wait on a missing survey-tool URL.
    """
    settings = settings or ProviderSettings.from_env()
    now = as_utc(now)
    try:
        stage = plan.stage(stage_id)
    except KeyError:
        known = ", ".join(s.id for s in plan.stages)
        raise UserError(f"unknown stage {stage_id!r} in plan {plan.name!r} (stages: {known})") from None
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
        return provider.query(metric.source, now, metric=metric.id)

    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="collect") as pool:
        return tuple(pool.map(measure_one, range(len(metrics))))
