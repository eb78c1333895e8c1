"""The whole plan as plain data (``rollout plan show --json``): durations as "48h", thresholds as "< 1"."""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import Any

from pydantic import BaseModel

from rollout_policies.plan.model import Plan, Threshold


def plan_to_data(plan: Plan) -> dict[str, Any]:
    """Every field of the plan, with stage tables written out in full (the normalized plan)."""
    data = _plain(plan)
    assert isinstance(data, dict)
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, Threshold):
        return str(value)
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, timedelta):
        return human_duration(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def human_duration(value: timedelta) -> str:
    """A duration as people write it: "2w", "10d", "48h", "30m", "0s".

    Unlike ``model.format_duration`` this keeps two days as "48h": between one and three days, hours
    read better than days ("no critical issues for 48 hours").
    """
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and not (suffix == "d" and 86400 < seconds < 3 * 86400):
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"
