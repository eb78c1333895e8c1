"""``rollout serve``: the Alertmanager webhook receiver that turns firing rollback alerts into rollbacks.

``WebhookReceiver.handle`` is the whole behaviour (auth, parse, replay check, dedup, rollback) over a
plain request value, so it is tested without sockets too; ``server.RunningReceiver`` serves it over
HTTP (Starlette on uvicorn) with timeouts, a connection cap and the token checked before the body.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from rollout_policies.alerting.dedup import Deduplicator
from rollout_policies.alerting.payload import (
    PayloadRejected,
    RollbackRequest,
    check_fresh,
    gate_alerts,
    parse_notification,
    rollback_request,
)
from rollout_policies.gitops.engine import RollbackOutcome
from rollout_policies.gitops.notify import Notifier
from rollout_policies.plan.model import Plan

log = logging.getLogger("rollout.alerting")

WEBHOOK_PATHS = ("/alerts", "/webhook")
MAX_BODY = 1 << 20  # Alertmanager caps a group's alerts; a megabyte is far beyond a real notification


class Rollback(Protocol):
    """Rolls the stacks back to stable and applies it; idempotent (already rolled back is a no-op)."""

    def __call__(
        self, stacks: Sequence[str], *, reason: str, evidence: Sequence[str], now: datetime
    ) -> RollbackOutcome: ...


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, code: int, **data: Any) -> Response:
        return cls(code, (json.dumps(data, sort_keys=True) + "\n").encode())


class ReceiverMetrics:
    """The receiver's own metrics, in a registry of their own (served at /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.received = Counter(
            "rollout_webhook_notifications_received", "Webhook calls received", registry=self.registry
        )
        self.rejected = Counter(
            "rollout_webhook_notifications_rejected",
            "Webhook calls refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.dedup_hits = Counter(
            "rollout_webhook_dedup_hits",
            "Notifications already handled (no second action)",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "rollout_rollbacks", "Rollbacks run from alerts, by result", ["result"], registry=self.registry
        )
        self.last_rollback = Gauge(
            "rollout_last_rollback_timestamp_seconds",
            "When the last rollback finished",
            registry=self.registry,
        )
        for reason in (
            "unauthorized",
            "malformed",
            "unsupported",
            "replay",
            "too_large",
            "timeout",
            "unknown_trigger",
            "unknown_stack",
            "unknown_service",
            "not_found",
        ):
            self.rejected.labels(reason)
        for result in ("rolled-back", "already-rolled-back", "failed"):
            self.rollbacks.labels(result)


@dataclass
class WebhookReceiver:
    """Alertmanager notifications in, at most one rollback per distinct notification out."""

    plan: Plan
    rollback: Rollback
    token: str
    allowed_stacks: frozenset[str] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Tolerated clock difference between Prometheus, Alertmanager and this receiver.
    skew: timedelta = timedelta(seconds=30)
    # A firing alert older than this is refused as a replay: a rollback must follow its alert promptly.
    max_age: timedelta = timedelta(minutes=30)
    dedup: Deduplicator = field(default_factory=Deduplicator)
    metrics: ReceiverMetrics = field(default_factory=ReceiverMetrics)
    # Where gate alerts (not rollbacks) are posted; rollbacks notify through the rollback itself.
    notifier: Notifier | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the webhook token is empty")
        self._expected = f"Bearer {self.token}".encode()
        # One rollback at a time: GitOps works in one clone, and the burst of duplicates that
        # Alertmanager (or an attacker) can send must find the first one's result, not race it.
        self._lock = threading.Lock()

    # -- requests ------------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, client: str = "-"
    ) -> Response:
        route = path.split("?", 1)[0]
        if method == "GET" and route == "/healthz":
            return Response.json(200, status="ok")
        if method == "GET" and route == "/metrics":
            return Response(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        if method == "POST" and route in WEBHOOK_PATHS:
            return self._notification(headers, body, client)
        return self._reject(client, PayloadRejected(404, "not_found", f"{method} {route}: no such endpoint"))

    def authorized(self, headers: Mapping[str, str]) -> bool:
        given = headers.get("authorization", headers.get("Authorization", ""))
        # Constant time, so the answer's timing tells nothing about how much of a guess was right.
        return hmac.compare_digest(given.encode(errors="replace"), self._expected)

    def refuse(self, client: str, err: PayloadRejected) -> Response:
        """A webhook call refused before ``handle`` saw its body (too large, too slow): counted, logged."""
        self.metrics.received.inc()
        return self._reject(client, err)

    def _reject(self, client: str, err: PayloadRejected) -> Response:
        self.metrics.rejected.labels(err.reason).inc()
        log.warning("webhook refused from %s: %s (%s, HTTP %d)", client, err.message, err.reason, err.status)
        return Response.json(err.status, error=err.message, reason=err.reason)

    def _notification(self, headers: Mapping[str, str], body: bytes, client: str) -> Response:
        self.metrics.received.inc()
        if not self.authorized(headers):
            return self._reject(client, PayloadRejected(401, "unauthorized", "missing or wrong bearer token"))
        if len(body) > MAX_BODY:
            return self._reject(client, PayloadRejected(413, "too_large", f"body over {MAX_BODY} bytes"))
        now = self.clock()
        try:
            notification = parse_notification(body)
            request = rollback_request(notification, self.plan, self.allowed_stacks)
        except PayloadRejected as err:
            return self._reject(client, err)
        key = notification.dedup_key()
        # Only a rollback needs the lock (its duplicates must find its result); a notification with
        # nothing to roll back never waits behind a rollback in flight.
        with self._lock if request is not None else contextlib.nullcontext():
            if self.dedup.seen(key):
                self.metrics.dedup_hits.inc()
                log.info("duplicate notification %s from %s: already handled", notification.group_key, client)
                return Response.json(200, result="duplicate")
            try:
                check_fresh(notification, now=now, skew=self.skew, max_age=self.max_age)
            except PayloadRejected as err:
                return self._reject(client, err)
            if request is None:
                self.dedup.remember(key)
                notice = gate_alerts(notification)
                if notice is not None and self.notifier is not None and self.notifier.posts:
                    for warning in self.notifier.post_text(*notice):
                        log.warning("gate alert notice: %s", warning)
                    return Response.json(200, result="notified")
                log.info(
                    "notification %s (%s) from %s: no firing rollback alert",
                    notification.group_key,
                    notification.status,
                    client,
                )
                return Response.json(200, result="no-action")
            return self._roll_back(key, request, now)

    def _roll_back(self, key: str, request: RollbackRequest, now: datetime) -> Response:
        log.warning("rolling back %s: %s", ", ".join(request.stacks), request.reason)
        try:
            outcome = self.rollback(request.stacks, reason=request.reason, evidence=request.evidence, now=now)
        except Exception as err:
            # Not remembered: Alertmanager retries a 5xx, and the retry may succeed.
            self.metrics.rollbacks.labels("failed").inc()
            log.error("rollback of %s failed: %s", ", ".join(request.stacks), err)
            return Response.json(500, error=f"rollback failed: {err}", reason="rollback_failed")
        self.dedup.remember(key)
        self.metrics.rollbacks.labels(outcome.result).inc()
        self.metrics.last_rollback.set(now.timestamp())
        log.warning("%s: %s", outcome.result, outcome.message)
        for warning in outcome.warnings:
            log.warning("after the %s: %s", outcome.result, warning)
        return Response.json(
            200,
            result=outcome.result,
            message=outcome.message,
            commit=outcome.commit,
            stacks=list(request.stacks),
            triggers=list(request.triggers),
        )
