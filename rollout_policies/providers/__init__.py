"""Metric providers: one module per backend behind ``MetricProvider``, chosen by name from ``PROVIDERS``."""

from rollout_policies.providers.base import MetricProvider, QueryFailed, TransientQueryFailure
from rollout_policies.providers.collect import (
    collect,
    collect_comparisons,
    collect_evidence,
    collect_windows,
    metrics_for_stage,
)
from rollout_policies.providers.registry import PROVIDERS, provider_for
from rollout_policies.providers.settings import ENVIRONMENT, ProviderSettings

__all__ = [
    "ENVIRONMENT",
    "PROVIDERS",
    "MetricProvider",
    "ProviderSettings",
    "QueryFailed",
    "TransientQueryFailure",
    "collect",
    "collect_comparisons",
    "collect_evidence",
    "collect_windows",
    "metrics_for_stage",
    "provider_for",
]
