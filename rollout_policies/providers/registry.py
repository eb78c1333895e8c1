"""The provider registry: backend name -> factory. Adding a backend is one module and one line here."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from rollout_policies.errors import UserError
from rollout_policies.providers.base import MetricProvider
from rollout_policies.providers.cloudwatch import CloudWatchProvider
from rollout_policies.providers.json_http import JsonHttpProvider
from rollout_policies.providers.manual import ManualProvider
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.sql import SqlProvider

PROVIDERS: Mapping[str, Callable[..., MetricProvider]] = MappingProxyType(
    {
        "prometheus": PrometheusProvider,
        "cloudwatch": CloudWatchProvider,
        "sql": SqlProvider,
        "json_http": JsonHttpProvider,
        "manual": ManualProvider,
    }
)


def provider_for(name: str, **settings: Any) -> MetricProvider:
    """The provider called ``name``, built with ``settings``; an unknown name or setting is a UserError.

    Unlike Flagger's factory there is no fallback: a typo in a plan must not quietly query Prometheus.
    """
    factory = PROVIDERS.get(name)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise UserError(f"unknown metric provider {name!r} (known: {known})")
    try:
        inspect.signature(factory).bind(**settings)
    except TypeError as err:
        raise UserError(f"metric provider {name!r}: bad settings: {err}") from None
    return factory(**settings)
