"""Decision notifications: every decision to Slack (incoming webhook), rollbacks to PagerDuty (Events v2).

Where to send comes from environment variables the plan names (``notifications.slack_webhook_env``,
``notifications.pagerduty_routing_key_env``): the plan holds names, never secrets, and neither the
webhook URL nor the routing key is ever logged or put in a message. A notification that fails, for
any reason (a malformed URL, an unreachable host, an error answer), is reported back as a one-line
warning naming only the kind of failure; it never undoes or blocks the decision it reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from rollout_policies.plan.model import Notifications

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Overrides the Events API address (a local receiver in tests); not a secret.
PAGERDUTY_URL_ENV = "PAGERDUTY_EVENTS_URL"


@dataclass(frozen=True)
class DecisionNotice:
    """What happened, in the words a person on call reads first."""

    plan: str
    stacks: tuple[str, ...]
    # promote | hold | rollback | abort | pause | resume | release-start | release-finalize | retry
    decision: str
    stage: str
    step: int
    summary: str
    reasons: tuple[str, ...]
    actor: str
    at: datetime
    commit: str | None = None
    link: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Notifier:
    """Sends notices where the plan says; ``environ`` and ``client`` are injectable for tests."""

    config: Notifications
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))

    def _secret(self, variable: str | None) -> str | None:
        # Secrets mounted from files often end in a newline: it is never part of a URL or a key.
        return (self.environ.get(variable) or "").strip() or None if variable else None

    def notify(self, notice: DecisionNotice) -> list[str]:
        """Send a notice; returns warnings (empty when everything configured was delivered)."""
        warnings: list[str] = []
        webhook = self._secret(self.config.slack_webhook_env)
        if webhook:
            warnings += self._post("Slack", webhook, slack_message(notice))
        if notice.decision in ("rollback", "abort"):  # an abort is a rollback that also pauses
            key = self._secret(self.config.pagerduty_routing_key_env)
            if key:
                url = self.environ.get(PAGERDUTY_URL_ENV) or PAGERDUTY_EVENTS_URL
                warnings += self._post("PagerDuty", url, pagerduty_event(notice, key), expect=202)
        return warnings

    @property
    def posts(self) -> bool:
        """A Slack webhook is configured: notices go somewhere."""
        return self._secret(self.config.slack_webhook_env) is not None

    def post_text(self, head: str, lines: Sequence[str] = (), *, page: str | None = None) -> list[str]:
        """A notice that is not a stage decision (a gate alert, a drill): Slack, and PagerDuty when
        ``page`` (its dedup key) is given. Returns warnings, as ``notify`` does."""
        warnings: list[str] = []
        webhook = self._secret(self.config.slack_webhook_env)
        if webhook:
            warnings += self._post("Slack", webhook, text_message(head, lines))
        key = self._secret(self.config.pagerduty_routing_key_env)
        if page and key:
            url = self.environ.get(PAGERDUTY_URL_ENV) or PAGERDUTY_EVENTS_URL
            event = {
                "routing_key": key,
                "event_action": "trigger",
                "dedup_key": page,
                "payload": {"summary": head[:1024], "source": "markethub-rollout", "severity": "error",
                            "custom_details": {"lines": list(lines)}},
            }  # fmt: skip
            warnings += self._post("PagerDuty", url, event, expect=202)
        return warnings

    def _post(
        self, service: str, url: str, payload: Mapping[str, Any], expect: int | None = None
    ) -> list[str]:
        try:
            response = self.client.post(url, json=payload)
        except Exception as err:  # InvalidURL, ValueError, ... are not httpx.HTTPError; none may escape
            # The error's text can hold the URL (a secret for Slack): name only its kind.
            return [f"{service} notification failed: {type(err).__name__}"]
        ok = response.status_code == expect if expect else response.is_success
        return [] if ok else [f"{service} notification failed: HTTP {response.status_code}"]


def slack_message(notice: DecisionNotice) -> dict[str, Any]:
    """A Slack incoming-webhook payload: a text fallback and a few blocks."""
    icon = {
        "promote": ":large_green_circle:",
        "hold": ":double_vertical_bar:",
        "rollback": ":rotating_light:",
        "abort": ":rotating_light:",
    }
    head = (
        f"{icon.get(notice.decision, '')} *{notice.decision.upper()}* {notice.plan} "
        f"on {', '.join(notice.stacks)} at {notice.stage} step {notice.step}: {notice.summary}"
    ).strip()
    lines = [f"• {reason}" for reason in notice.reasons[:10]]
    context = f"by {notice.actor} at {notice.at.isoformat()}"
    if notice.commit:
        context += f", commit {notice.commit[:12]}"
    if notice.link:
        context += f", {notice.link}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": head, "blocks": blocks}


def text_message(head: str, lines: Sequence[str] = ()) -> dict[str, Any]:
    """A Slack payload for notices other than decisions: a head line and up to ten bullets."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    if lines:
        text = "\n".join(f"• {line}" for line in list(lines)[:10])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return {"text": head, "blocks": blocks}


def decision_signature(decision: str, stage: str, step: int, reasons: Sequence[Any]) -> str:
    """What makes two decisions the same news: the action, where, and which reasons (code and
    subject, not the measured figures, which move every run)."""
    keys = sorted({f"{getattr(r, 'code', '')}:{getattr(r, 'subject', r)}" for r in reasons})
    return f"{decision} {stage} step {step}: {', '.join(keys)}"


def notify_drill(
    report: Any, config: Notifications, report_name: str, *, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Post a drill's verdict and objectives; a failed drill also pages (it is a finding)."""
    notifier = Notifier(config, environ=dict(os.environ) if environ is None else environ)
    verdict = report.verdict.value
    head = f"*DRILL* {report.drill}: {verdict.upper()} (report {report_name})"
    lines = []
    for objective in report.objectives:
        measured = (
            "not measured" if objective.measured_seconds is None else f"{objective.measured_seconds:.1f}s"
        )
        lines.append(f"{objective.name}: {measured} (limit {objective.limit_seconds:.0f}s)")
    lines += [f"{step.name}: {step.status.value} {step.detail}".strip() for step in report.steps
              if step.status.value not in ("passed", "skipped")]  # fmt: skip
    page = f"rollout/drill/{report.drill}" if verdict == "failed" else None
    return notifier.post_text(head, lines, page=page)


def pagerduty_event(notice: DecisionNotice, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 trigger; the dedup key makes a repeated rollback one incident."""
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": f"rollout/{notice.plan}/{'+'.join(notice.stacks)}/rollback/{notice.stage}",
        "payload": {
            "summary": f"Rollback of {notice.plan} on {', '.join(notice.stacks)}: {notice.summary}"[:1024],
            "source": "markethub-rollout",
            "severity": "critical",
            "timestamp": notice.at.isoformat(),
            "component": ", ".join(notice.stacks),
            "group": notice.plan,
            "class": "rollback",
            "custom_details": {
                "stage": notice.stage,
                "step": notice.step,
                "reasons": list(notice.reasons),
                "actor": notice.actor,
                "commit": notice.commit,
                **dict(notice.details),
            },
        },
    }


def reasons_text(reasons: Sequence[object]) -> tuple[str, ...]:
    return tuple(str(reason) for reason in reasons)
