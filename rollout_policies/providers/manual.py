"""Manual: values a person records when signing off (a feedback score, a support-volume check).

Nothing is queried. The value comes from the sign-offs given in settings (``signoffs``: a mapping
from the source's key to a number, or to ``(number, signed_at)``); the key is ``options.key``, else
``query``, else the metric id. Without a sign-off the metric has no data, so it can never pass
by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rollout_policies.core.measurement import Measurement
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.base import NoValues, QueryFailed, Reading, as_utc, measure, to_float


class ManualProvider:
    name = "manual"

    def __init__(self, *, signoffs: Mapping[str, Any] | None = None) -> None:
        self.signoffs = dict(signoffs or {})

    @staticmethod
    def key_for(source: MetricSource, metric: str) -> str:
        return str(source.options.get("key") or source.query.strip() or metric)

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)
        key = self.key_for(source, metric)

        def read() -> Reading:
            if key not in self.signoffs:
                raise NoValues(f"awaiting a sign-off for {key!r}")
            entry = self.signoffs[key]
            if isinstance(entry, tuple | list):
                if len(entry) != 2 or not isinstance(entry[1], datetime):
                    raise QueryFailed(f"sign-off {key!r} must be a number or (number, signed_at)")
                return Reading(to_float(entry[0], f"sign-off {key!r}"), as_utc(entry[1]))
            # A sign-off without a time counts as given now: it stands until someone withdraws it.
            return Reading(to_float(entry, f"sign-off {key!r}"), now)

        # One attempt: there is nothing transient about a sign-off.
        return measure(self.name, metric, source, now, read, attempts=1)

    def is_online(self) -> bool:
        return True
