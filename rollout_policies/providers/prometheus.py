"""Prometheus: a PromQL instant query over the HTTP API (``/api/v1/query``), evaluated at ``now``,
and the per-version range queries (``/api/v1/query_range``) that feed comparison gates.

An empty vector and NaN are no data. The returned sample's timestamp is the observation time; a
series whose target stopped answering gets Prometheus's staleness marker and drops out of the
result, so a dead exporter reads as no data rather than as its last good value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import httpx

from rollout_policies.core.measurement import ComparisonSample, LatencySample, Measurement, Phase, RateSample
from rollout_policies.errors import UserError
from rollout_policies.plan.model import ComparisonKind, GateComparison, MetricSource, Op
from rollout_policies.providers.base import (
    DEFAULT_ATTEMPTS,
    DEFAULT_MAX_AGE,
    DEFAULT_TIMEOUT,
    ComparisonFetch,
    NoValues,
    QueryFailed,
    Reading,
    TransientQueryFailure,
    as_utc,
    measure,
    to_float,
    with_retries,
)


class PromQLClient(Protocol):
    """The seam: one instant query; returns the response's ``data`` object."""

    def instant_query(self, promql: str, at: datetime) -> Mapping[str, Any]: ...


@runtime_checkable
class PromQLRangeClient(PromQLClient, Protocol):
    """A client that can also run a range query (start..end every ``step``)."""

    def range_query(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[str, Any]: ...


class HttpPromQLClient:
    """The real client: Prometheus's HTTP API through httpx."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, http: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)

    def instant_query(self, promql: str, at: datetime) -> Mapping[str, Any]:
        return self._get("query", {"query": promql, "time": _millis(at)})

    def range_query(self, promql: str, start: datetime, end: datetime, step: timedelta) -> Mapping[str, Any]:
        params = {
            "query": promql,
            "start": _millis(start),
            "end": _millis(end),
            "step": f"{step.total_seconds():g}",
        }
        return self._get("query_range", params)

    def _get(self, endpoint: str, params: Mapping[str, str]) -> Mapping[str, Any]:
        try:
            response = self.http.get(f"{self.url}/api/v1/{endpoint}", params=params)
        except httpx.TimeoutException as err:
            raise TransientQueryFailure(f"timed out asking {self.url}: {type(err).__name__}") from err
        except httpx.TransportError as err:
            raise TransientQueryFailure(f"cannot reach {self.url}: {err}") from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            problem = f"{body.get('errorType', 'error')}: {body.get('error', '')}".strip()
            if response.status_code >= 500 and body.get("errorType") != "execution":
                raise TransientQueryFailure(f"HTTP {response.status_code}: {problem}")
            raise QueryFailed(problem)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientQueryFailure(f"HTTP {response.status_code} from {self.url}")
        if response.status_code != 200 or not isinstance(body, dict) or "data" not in body:
            raise QueryFailed(f"HTTP {response.status_code} from {self.url}: not a Prometheus API answer")
        data: Mapping[str, Any] = body["data"]
        return data


def _millis(moment: datetime) -> str:
    """Seconds with milliseconds, rounded down: Prometheus stamps an instant query's sample with the
    time it was asked for, so rounding up would date the sample after "now" (clocks disagree)."""
    return f"{math.floor(moment.timestamp() * 1000) / 1000:.3f}"


def reading_from(data: Mapping[str, Any]) -> Reading:
    """One value from an instant query's result: a scalar, or a vector of exactly one series."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar" and isinstance(result, list):
        sample = result
    elif result_type == "vector" and isinstance(result, list):
        if not result:
            raise NoValues("the query returned an empty vector")
        if len(result) > 1:
            raise QueryFailed(
                f"the query returned {len(result)} series; a gate needs one (aggregate it, e.g. sum(...))"
            )
        sample = result[0].get("value")
    else:
        raise QueryFailed(f"unexpected result type {result_type!r}; use a query that returns a number")
    try:
        stamp, text = sample
        observed_at = datetime.fromtimestamp(float(stamp), tz=UTC)
    except (TypeError, ValueError) as err:
        raise QueryFailed(f"malformed sample {sample!r}") from err
    return Reading(to_float(text, "the sample"), observed_at)


class PrometheusProvider:
    """PromQL in ``source.query``; the server URL comes from settings (``ROLLOUT_PROMETHEUS_URL``)."""

    name = "prometheus"

    def __init__(
        self,
        *,
        url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        client: PromQLClient | None = None,
    ) -> None:
        if client is None:
            if not url:
                raise UserError("prometheus: no server URL (set ROLLOUT_PROMETHEUS_URL or prometheus_url)")
            client = HttpPromQLClient(url, timeout=timeout)
        self.client = client
        self.attempts = attempts

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)

        def read() -> Reading:
            if not source.query.strip():
                raise QueryFailed("the source has no PromQL query")
            return reading_from(self.client.instant_query(source.query, now))

        return measure(self.name, metric, source, now, read, attempts=self.attempts)

    def compare(
        self,
        settings: GateComparison,
        now: datetime,
        *,
        metric: str,
        since: datetime | None = None,
        max_age: timedelta = DEFAULT_MAX_AGE,
        exclude_segments: Sequence[str] = (),
    ) -> ComparisonFetch:
        """The comparison's per-version samples from ``since`` (the stage start) to ``now``, and the
        baseline's samples of the ``HISTORY`` before ``since`` (canary counts 0), from which the test
        learns how much the rates jitter.

        The whole stage is read, in range queries of at most ``MAX_POINTS`` steps each, so the test
        never restarts mid-stage. Series of ``exclude_segments`` (by the comparison's
        ``segment_label``) are dropped from both versions: like is compared with like. Failures and
        empty answers are a ``ComparisonFetch`` whose measurement has phase ``error`` or ``no_data``,
        judged by ``base.measure`` like every other query; never raised.
        """
        now = as_utc(now)
        found: list[ComparisonSample] = []
        range_query = self.client.range_query if isinstance(self.client, PromQLRangeClient) else None

        def read() -> Reading:
            found.clear()
            if not settings.live_queries:
                raise QueryFailed("the comparison names no PromQL queries (events and trials, or histogram)")
            if range_query is None:
                raise QueryFailed("this Prometheus client cannot run range queries")
            start, end = comparison_window(since, now, settings.interval)
            if end - start < settings.interval:
                raise NoValues(f"less than one interval ({settings.interval}) since the stage started")
            stage_start = start
            start = history_start(start, settings.interval)

            def ask(promql: str) -> list[Series]:
                series = [
                    found
                    for a, b in chunks(start, end, settings.interval)
                    for found in matrix_from(range_query(promql, a, b, settings.interval))
                ]
                return merged(without_segments(series, settings, exclude_segments), settings)

            if settings.kind is ComparisonKind.RATE:
                assert settings.events is not None and settings.trials is not None
                samples: Sequence[ComparisonSample] = rate_samples(
                    metric, settings, ask(settings.events), ask(settings.trials), since=stage_start
                )
            else:
                assert settings.histogram is not None
                samples = latency_samples(metric, settings, ask(settings.histogram), since=stage_start)
            if not any(s.observed_at > stage_start for s in samples):
                raise NoValues(
                    f"no interval with counts for both {settings.label}={settings.canary!r}"
                    f" and {settings.label}={settings.baseline!r}"
                )
            found.extend(samples)
            return Reading(float(len(samples)), samples[-1].observed_at)

        source = MetricSource(provider=self.name, query=" ; ".join(settings.live_queries), max_age=max_age)
        measurement = measure(f"{self.name} comparison", metric, source, now, read, attempts=self.attempts)
        return ComparisonFetch(metric, measurement, tuple(found))

    def window(
        self, source: MetricSource, worst: Op, start: datetime, end: datetime, *, metric: str = ""
    ) -> tuple[Measurement, ...]:
        """The metric over ``start``..``end`` as a history the core can judge a clean window from.

        One range query of ``max_over_time((<query>)[step:])`` (``min_over_time`` when the bound is a
        lower one: ``worst`` is the threshold's operator), so each point is the worst value over the
        step before it and a breach between two points is not missed. Each point covers its step
        (``since``); a stretch with no points stays uncovered, so a window Prometheus cannot vouch
        for reads UNKNOWN, never clean. Failures are one ``error`` or ``no_data`` measurement.
        """
        end = as_utc(end)
        label = metric or source.query
        range_query = getattr(self.client, "range_query", None)
        step = max(source.max_age, (end - as_utc(start)) / MAX_POINTS, timedelta(seconds=1))
        points = max(1, math.ceil((end - as_utc(start)) / step))
        first = end - step * (points - 1)
        over = "min_over_time" if worst in (Op.GT, Op.GE) else "max_over_time"
        step_text = f"{int(step.total_seconds())}s"
        promql = f"{over}(({source.query.strip()})[{step_text}:])"
        found: list[Measurement] = []

        def read() -> Reading:
            found.clear()
            if not source.query.strip():
                raise QueryFailed("the source has no PromQL query")
            if range_query is None:
                raise QueryFailed("this Prometheus client cannot run range queries")
            series = matrix_from(range_query(promql, first, end, step))
            if not series:
                raise NoValues(f"no value of {label} from {first.isoformat()} to {end.isoformat()}")
            if len(series) > 1:
                raise QueryFailed(f"the query returned {len(series)} series; a window needs one")
            for stamp, value in series[0][1]:
                if math.isfinite(value):
                    at = _at(stamp)
                    found.append(
                        Measurement.ok(label, value, at, f"{over} over {step_text}", since=at - step)
                    )
            if not found:
                raise NoValues(f"no number in {label}'s window")
            return Reading(found[-1].value, found[-1].observed_at)

        checked = measure(self.name, metric, source, end, read, attempts=self.attempts)
        return tuple(found) if checked.phase is Phase.OK else (checked,)

    def is_online(self) -> bool:
        try:
            with_retries(lambda: self.client.instant_query("vector(1)", datetime.now(UTC)), attempts=1)
        except Exception:
            return False
        return True


# ---------------------------------------------------------------------------------------------
# Comparison gates: per-version counts per interval from range queries.
# ---------------------------------------------------------------------------------------------

MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series
DEFAULT_LOOKBACK = timedelta(hours=24)  # when the caller does not say when the stage started
# The baseline's counts before the stage: how much its rate jitters sets the test's dispersion prior.
HISTORY = timedelta(hours=24)
# increase() extrapolates each series on its own, so an interval's events can come out a little
# above its trials; within this slack they are capped at the trials, beyond it the queries are wrong.
_EVENTS_SLACK = 0.05


def comparison_window(
    since: datetime | None, now: datetime, interval: timedelta
) -> tuple[datetime, datetime]:
    """The stage's range: from ``since`` (the stage start) to ``now``, however long the stage is."""
    now = as_utc(now)
    start = as_utc(since) if since is not None else now - DEFAULT_LOOKBACK
    return start, now


def history_start(stage_start: datetime, interval: timedelta) -> datetime:
    """Where the baseline's history begins: ``HISTORY`` before the stage, on the stage's step grid."""
    return stage_start - interval * math.floor(HISTORY / interval)


def chunks(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """``start..end`` as consecutive range queries of at most ``MAX_POINTS`` points, on one step grid."""
    out: list[tuple[datetime, datetime]] = []
    a = start
    while a <= end:
        b = min(a + step * (MAX_POINTS - 1), end)
        out.append((a, b))
        a = b + step
    return out


def without_segments(
    series: Sequence[Series], settings: GateComparison, excluded: Sequence[str]
) -> list[Series]:
    """The series of segments the candidate serves (all of them without ``exclude_segments``)."""
    if not excluded or settings.segment_label is None:
        return list(series)
    label = settings.segment_label
    return [(labels, points) for labels, points in series if labels.get(label, "") not in excluded]


def merged(series: Sequence[Series], settings: GateComparison) -> list[Series]:
    """Chunks and segments of one series joined: points summed per (labels but the segment, time)."""
    drop = {settings.segment_label} if settings.segment_label else set()
    joined: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
    for labels, points in series:
        key = tuple(sorted((k, v) for k, v in labels.items() if k not in drop))
        into = joined.setdefault(key, {})
        for stamp, value in points:
            if math.isfinite(value):
                into[stamp] = into.get(stamp, 0.0) + value
    return [(dict(key), sorted(points.items())) for key, points in joined.items()]


Series = tuple[Mapping[str, str], list[tuple[float, float]]]


def matrix_from(data: Mapping[str, Any]) -> list[Series]:
    """The series of a range query's answer: labels and (unix time, value) points."""
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        kind = data.get("resultType")
        raise QueryFailed(f"unexpected result type {kind!r}; a range query returns a matrix")
    series: list[Series] = []
    for item in data["result"]:
        labels = item.get("metric") if isinstance(item, Mapping) else None
        values = item.get("values") if isinstance(item, Mapping) else None
        if not isinstance(labels, Mapping) or not isinstance(values, list):
            raise QueryFailed(f"malformed series {str(item)[:120]!r}")
        points: list[tuple[float, float]] = []
        for point in values:
            try:
                stamp, text = point
                value = to_float(text, "a sample")
                points.append((float(stamp), math.nan if value is None else value))
            except (TypeError, ValueError) as err:
                raise QueryFailed(f"malformed sample {point!r}") from err
        series.append(({str(k): str(v) for k, v in labels.items()}, points))
    return series


def _version(labels: Mapping[str, str], settings: GateComparison, what: str) -> str | None:
    """``canary``, ``baseline`` or None (another version: ignored) for a series' labels."""
    if settings.label not in labels:
        raise QueryFailed(
            f"the {what} query returned a series without label {settings.label!r}"
            f" ({dict(labels)}); group it by ({settings.label})"
        )
    value = labels[settings.label]
    if value == settings.canary:
        return "canary"
    if value == settings.baseline:
        return "baseline"
    return None


def _per_version(
    series: Sequence[Series], settings: GateComparison, what: str
) -> dict[str, dict[float, float]]:
    """``{"canary": {t: v}, "baseline": {t: v}}`` from a query grouped by the version label only."""
    found: dict[str, dict[float, float]] = {"canary": {}, "baseline": {}}
    seen: set[str] = set()
    for labels, points in series:
        version = _version(labels, settings, what)
        if version is None:
            continue
        if version in seen:
            raise QueryFailed(
                f"the {what} query returned several series for {settings.label}={labels[settings.label]!r};"
                f" aggregate it: sum by ({settings.label}) (...)"
            )
        seen.add(version)
        found[version] = {t: v for t, v in points if math.isfinite(v)}
    return found


def _at(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)


def rate_samples(
    metric: str,
    settings: GateComparison,
    events: Sequence[Series],
    trials: Sequence[Series],
    *,
    since: datetime | None = None,
) -> tuple[RateSample, ...]:
    """One ``RateSample`` per step where both versions have trials (events missing there count 0),
    and, before ``since``, one per step where the baseline has trials (the canary's counts 0).

    No events series at all is no data, not zero: a typo in the query must not read as a clean
    canary (initialise error counters at 0, as the simulator does).
    """
    bad = _per_version(events, settings, "events")
    out_of = _per_version(trials, settings, "trials")
    for version, name in (("canary", settings.canary), ("baseline", settings.baseline)):
        if not out_of[version]:
            raise NoValues(f"the trials query has no series for {settings.label}={name!r}")
    if not bad["canary"] and not bad["baseline"]:
        raise NoValues("the events query returned no series for either version")
    samples: list[RateSample] = []
    cut = since.timestamp() if since is not None else -math.inf
    history = {t for t in out_of["baseline"] if t <= cut}
    stage = {t for t in set(out_of["canary"]) & set(out_of["baseline"]) if t > cut}
    for stamp in sorted(history | stage):
        counts = []
        for version in ("canary", "baseline"):
            if stamp <= cut and version == "canary":  # the history: the baseline's counts only
                counts += [0.0, 0.0]
                continue
            trial_count = max(0.0, out_of[version][stamp])
            event_count = max(0.0, bad[version].get(stamp, 0.0))
            if event_count > trial_count * (1 + _EVENTS_SLACK) + 1:
                raise QueryFailed(
                    f"{event_count:g} events but {trial_count:g} trials for {version} at"
                    f" {_at(stamp).isoformat()}: the events query must count a subset of the trials"
                )
            counts += [min(event_count, trial_count), trial_count]
        samples.append(RateSample(metric, _at(stamp), counts[0], counts[1], counts[2], counts[3]))
    return tuple(samples)


def latency_samples(
    metric: str, settings: GateComparison, histogram: Sequence[Series], *, since: datetime | None = None
) -> tuple[LatencySample, ...]:
    """One ``LatencySample`` per step where both versions have every bucket (cumulative ``le`` counts
    differenced into per-bucket counts; a small negative difference from extrapolation is 0), and,
    before ``since``, one per step where the baseline has every bucket (the canary's counts 0)."""
    cumulative: dict[str, dict[float, dict[float, float]]] = {"canary": {}, "baseline": {}}
    bounds: set[float] = set()
    for labels, points in histogram:
        version = _version(labels, settings, "histogram")
        if version is None:
            continue
        if "le" not in labels:
            raise QueryFailed(
                f"the histogram query returned a series without le; group it by ({settings.label}, le)"
            )
        try:
            bound = float(labels["le"])
        except ValueError:
            raise QueryFailed(f"le={labels['le']!r} is not a number") from None
        bounds.add(bound)
        per_step = cumulative[version]
        for stamp, value in points:
            if math.isfinite(value):
                per_step.setdefault(stamp, {})[bound] = value
    if not cumulative["canary"] or not cumulative["baseline"]:
        missing = settings.canary if not cumulative["canary"] else settings.baseline
        raise NoValues(f"the histogram query has no series for {settings.label}={missing!r}")
    if math.inf not in bounds:
        raise QueryFailed('the histogram query has no le="+Inf" bucket')
    ordered = sorted(bounds)
    edges = tuple(ordered[:-1])
    if len(edges) < 2:
        raise QueryFailed("the histogram query needs at least two finite le buckets")
    samples: list[LatencySample] = []
    cut = since.timestamp() if since is not None else -math.inf
    history = {t for t in cumulative["baseline"] if t <= cut}
    stage = {t for t in set(cumulative["canary"]) & set(cumulative["baseline"]) if t > cut}
    for stamp in sorted(history | stage):
        counts: dict[str, tuple[float, ...]] = {}
        if stamp <= cut:
            counts["canary"] = tuple(0.0 for _ in ordered)
        for version in ("canary", "baseline"):
            if version in counts:
                continue
            row = cumulative[version][stamp]
            if any(bound not in row for bound in ordered):
                break
            running = [row[bound] for bound in ordered]
            counts[version] = tuple(
                max(0.0, running[i] - (running[i - 1] if i else 0.0)) for i in range(len(running))
            )
        if len(counts) == 2:
            samples.append(LatencySample(metric, _at(stamp), edges, counts["canary"], counts["baseline"]))
    return tuple(samples)
