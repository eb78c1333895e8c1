"""Cron expressions and Go durations from the plan's durations (pure helpers shared by components)."""

from __future__ import annotations

from datetime import timedelta


def cron_every(every: timedelta, *, minute: int = 0, hour: int = 0) -> str:
    """A cron expression firing once per ``every`` (``minute``/``hour`` offset the firing time).

    Durations that divide an hour or a day evenly become plain five-field cron; anything else falls
    back to ``@every``, which both Kubernetes CronJobs and Velero (robfig/cron) accept.
    """
    seconds = int(every.total_seconds())
    if seconds <= 0:
        raise ValueError(f"a schedule needs a positive interval, not {every}")
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds == 3600:
        return f"{minute} * * * *"
    if seconds % 3600 == 0 and seconds < 86400 and 86400 % seconds == 0:
        return f"{minute} */{seconds // 3600} * * *"
    if seconds == 86400:
        return f"{minute} {hour} * * *"
    if seconds == 7 * 86400:
        return f"{minute} {hour} * * 0"
    return f"@every {go_duration(every)}"


def go_duration(value: timedelta) -> str:
    """``timedelta(days=7)`` -> ``168h0m0s``: the form Velero's ttl and Go's time.ParseDuration take."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s"
