"""A small run of the webhook load benchmark (bench/webhook_load.py) against the real `rollout serve`.

It checks behaviour only: every slow unauthenticated connection is closed by the server, with a
408, and every authenticated alert sent meanwhile is answered 200, with exactly one rollback commit.
How fast is the benchmark's business (`make bench-webhook`, figures in docs/alerting.md).
"""

from __future__ import annotations

from bench.webhook_load import run


def test_slow_unauthenticated_connections_are_dropped_and_alerts_still_served() -> None:
    figures, serve = run(slow=60, alerts=40, seconds=2, header_timeout=2, grace=30)
    assert figures.slow_still_open == 0
    assert len(figures.slow_closed_after) == 60
    assert figures.slow_got_408 == 60
    assert figures.alert_statuses == [200] * 40
    assert sorted(set(figures.alert_results)) == ["duplicate", "no-action", "rolled-back"]
    assert figures.alert_results.count("rolled-back") == 1
    assert len(serve.remote.commits_since_seed()) == 1
