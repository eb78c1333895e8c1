"""Alertmanager webhook notifications (payload version 4): parsing, validation and rollback requests.

Pure: bytes and "now" in, a typed notification or a ``PayloadRejected`` with a reason out. Which
alerts roll back is decided from the labels ``infra/alerts.py`` puts on the trigger rules:
``rollout_action="rollback"``, ``rollout_trigger`` (a plan trigger id) and ``rollout_stack``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from rollout_policies.plan.model import Plan

ROLLBACK_ACTION = "rollback"
# Alertmanager writes this for "not set" (Go's zero time).
_ZERO_YEAR = 1
# Bounds on what one notification may hold, far above what Alertmanager sends: a body within the
# size cap can still be nested deeply or hold a million tiny values.
MAX_DEPTH = 32
MAX_VALUES = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    """Text that reaches a commit message or a log line: one line, no control characters."""
    if _CONTROL.search(value):
        raise ValueError("holds a control character (a newline, a NUL, ...)")
    return value


def _url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return _printable(value)


Text = Annotated[str, Field(max_length=1024), AfterValidator(_printable)]


class PayloadRejected(Exception):
    """A notification refused with an HTTP status and a reason label for the metrics."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Model(BaseModel):
    # Alertmanager adds fields between versions; unknown ones are ignored, known ones are typed.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    # A time without a zone cannot be compared with "now": refused, not guessed.
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime = Field(alias="endsAt")
    generator_url: Annotated[str, Field(max_length=4096), AfterValidator(_url)] = Field(
        default="", alias="generatorURL"
    )
    fingerprint: str = Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_.:-]+$")

    @property
    def ends_is_set(self) -> bool:
        return self.ends_at.year > _ZERO_YEAR


class Notification(_Model):
    """One webhook call: a group of alerts with the same grouping labels."""

    version: Literal["4"]
    group_key: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)] = Field(
        alias="groupKey"
    )
    status: Literal["firing", "resolved"]
    receiver: Text
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    alerts: tuple[Alert, ...] = Field(min_length=1)

    def dedup_key(self) -> str:
        """Group key, status and the firing set: Alertmanager resends exactly this when nothing changed."""
        prints = ",".join(sorted(f"{a.fingerprint}:{a.status}" for a in self.alerts))
        return f"{self.group_key}|{self.status}|{prints}"


@dataclass(frozen=True)
class RollbackRequest:
    """Firing rollback alerts of one notification: which stacks, and why."""

    stacks: tuple[str, ...]
    triggers: tuple[str, ...]
    reason: str
    evidence: tuple[str, ...]


def parse_notification(body: bytes) -> Notification:
    """Bytes to a version-4 notification, or ``PayloadRejected`` (400 malformed, 422 unsupported)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise PayloadRejected(400, "malformed", f"body is not JSON: {err.msg} at char {err.pos}") from None
    except RecursionError:
        raise PayloadRejected(400, "malformed", f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # not UTF-8, an integer of thousands of digits, NaN
        raise PayloadRejected(400, "malformed", f"body is not JSON: {_first_line(str(err))}") from None
    _check_shape(data)
    if not isinstance(data, dict):
        raise PayloadRejected(400, "malformed", "body is not a JSON object")
    if data.get("version") != "4":
        raise PayloadRejected(
            422, "unsupported", f"payload version {data.get('version')!r}: only Alertmanager version 4"
        )
    try:
        return Notification.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise PayloadRejected(400, "malformed", f"{where}: {first['msg']}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def _check_shape(data: Any) -> None:
    """Depth and size bounds, and text that can be written as UTF-8 (no lone surrogates)."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise PayloadRejected(400, "malformed", f"body is nested deeper than {MAX_DEPTH} levels")
        if count > MAX_VALUES:
            raise PayloadRejected(400, "malformed", f"body holds more than {MAX_VALUES} values")
        if isinstance(value, dict):
            stack.extend((key, depth + 1) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PayloadRejected(400, "malformed", "body holds text that is not Unicode") from None


def check_fresh(notification: Notification, *, now: datetime, skew: timedelta, max_age: timedelta) -> None:
    """Refuse a replay of an old notification (409).

    Alertmanager sends a firing alert with the time it started firing (``startsAt``, Prometheus's
    fire time) and a zero ``endsAt``; a real notification reaches the receiver seconds after that,
    or after Alertmanager's retries. A firing alert that started more than ``max_age`` ago, or whose
    ``endsAt`` is set and past, is an old notification sent again; one that starts in the future is
    forged or from a clock far off. Repeats of a notification already handled are not refused here:
    the dedup answers them (``duplicate``) before this check.
    """
    for alert in notification.alerts:
        if alert.status != "firing":
            continue
        if alert.starts_at < now - max_age or (alert.ends_is_set and alert.ends_at < now - skew):
            raise PayloadRejected(
                409,
                "replay",
                f"alert {alert.fingerprint} started firing at {alert.starts_at.isoformat()}:"
                f" an old notification (max age {max_age})",
            )
        if alert.starts_at > now + skew:
            raise PayloadRejected(
                409,
                "replay",
                f"alert {alert.fingerprint} starts in the future ({alert.starts_at.isoformat()})",
            )


def gate_alerts(notification: Notification) -> tuple[str, list[str]] | None:
    """A notice for the firing gate alerts of a notification (``rollout_action="alert"``), or None.

    Gate alerts ask for no action from the tool: a person looks. So they are posted, once per
    distinct notification (the receiver's dedup), never turned into a rollback.
    """
    firing = [
        a for a in notification.alerts if a.status == "firing" and a.labels.get("rollout_action") == "alert"
    ]
    if not firing:
        return None
    stacks = sorted({a.labels.get("rollout_stack", "?") for a in firing})
    head = f"*GATE ALERT* {', '.join(stacks)}: {len(firing)} gate(s) beyond their alert threshold"
    lines = [
        f"{a.labels.get('rollout_metric', a.labels.get('alertname', '?'))}: "
        f"{a.annotations.get('summary', '')} {a.generator_url}".strip()
        for a in firing
    ]
    return head, lines


def rollback_request(
    notification: Notification, plan: Plan, allowed_stacks: frozenset[str] | None
) -> RollbackRequest | None:
    """The rollback a notification asks for, or None (resolved, or no rollback alert firing).

    Rollback alerts that name an unknown trigger, another service, no stack or a stack this
    receiver does not own are refused (422): a misrouted rule must be seen, not ignored.
    """
    triggers = {trigger.id: trigger for trigger in plan.triggers}
    stacks: list[str] = []
    fired: list[str] = []
    texts: list[str] = []
    evidence: list[str] = []
    for alert in notification.alerts:
        labels = alert.labels
        if labels.get("rollout_action") != ROLLBACK_ACTION:
            continue
        trigger_id = labels.get("rollout_trigger", "")
        if trigger_id not in triggers:
            raise PayloadRejected(
                422,
                "unknown_trigger",
                f"alert {alert.fingerprint}: rollout_trigger {trigger_id!r} is not in the plan",
            )
        service = labels.get("rollout_service")
        if service is not None and service != plan.service:
            raise PayloadRejected(
                422,
                "unknown_service",
                f"alert {alert.fingerprint}: rollout_service {service!r} is not {plan.service!r}",
            )
        stack = labels.get("rollout_stack", "")
        if not stack:
            raise PayloadRejected(422, "unknown_stack", f"alert {alert.fingerprint}: no rollout_stack label")
        if allowed_stacks is not None and stack not in allowed_stacks:
            raise PayloadRejected(
                422, "unknown_stack", f"alert {alert.fingerprint}: stack {stack!r} is not served here"
            )
        if alert.status != "firing":
            continue
        stacks.append(stack)
        if trigger_id not in fired:
            fired.append(trigger_id)
            texts.append(triggers[trigger_id].text)
        if alert.generator_url:
            evidence.append(alert.generator_url)
    if not stacks:
        return None
    ordered = tuple(dict.fromkeys(stacks))
    reason = f"automatic rollback: {'; '.join(texts)} (Alertmanager {notification.receiver})"
    return RollbackRequest(ordered, tuple(fired), reason, tuple(dict.fromkeys(evidence)))
