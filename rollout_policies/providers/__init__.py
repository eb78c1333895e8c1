"""Metric providers: one module per backend behind ``MetricProvider`` (and ``ComparisonProvider``),
chosen by name from ``PROVIDERS`` (``COMPARISON_PROVIDERS``)."""

from rollout_policies.providers.base import (
    ComparisonFetch,
    ComparisonProvider,
    MetricProvider,
    QueryFailed,
    TransientQueryFailure,
)
from rollout_policies.providers.collect import (
    collect,
    collect_comparisons,
    collect_evidence,
    collect_windows,
    metrics_for_stage,
)
from rollout_policies.providers.metrics_file import MetricsFileProvider
from rollout_policies.providers.registry import (
    COMPARISON_PROVIDERS,
    PROVIDERS,
    comparison_provider_for,
    provider_for,
)
from rollout_policies.providers.settings import ENVIRONMENT, ProviderSettings

__all__ = [
    "COMPARISON_PROVIDERS",
    "ENVIRONMENT",
    "PROVIDERS",
    "ComparisonFetch",
    "ComparisonProvider",
    "MetricProvider",
    "MetricsFileProvider",
    "ProviderSettings",
    "QueryFailed",
    "TransientQueryFailure",
    "collect",
    "collect_comparisons",
    "collect_evidence",
    "collect_windows",
    "comparison_provider_for",
    "metrics_for_stage",
    "provider_for",
]
