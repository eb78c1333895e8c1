"""The metrics-file provider: measurements, sign-offs, stage times and per-version counts in a YAML or
JSON file, standing in for live backends (``--metrics-file``) or feeding a plan metric of its own.

    # every key but ``metrics`` is optional
    observed_at: 2026-11-20T09:00:00Z       # when entries without their own observed_at were observed
    stage_started_at: 2026-11-13T09:00:00Z  # stands in for --stage-started
    step_started_at: 2026-11-19T09:00:00Z   # stands in for --step-started
    metrics:
      crash_rate: 0.4                                            # a bare number: phase ok
      app_load_time: {value: 2.1, observed_at: 2026-11-20T08:58:00Z}
      nps: {phase: error, message: "survey API returned 503"}    # phase ok | no_data | error
      daily_active_users: {phase: no_data}
      api_error_rate:                                            # a list: the metric's history,
        - {value: 0.1, observed_at: 2026-11-20T08:55:00Z}        # read by rollback triggers
        - {value: 0.2, observed_at: 2026-11-20T09:00:00Z}
      critical_issues: {value: 0, since: 2026-11-18T09:00:00Z}   # a count over since..observed_at
    signoffs: [beta-core-feedback]                               # manual criteria signed off
    comparisons:                    # per-version counts over time, for comparison gates
      api_error_rate:               # rate: one entry per interval, counts in that interval
        - {observed_at: 2026-11-20T08:55:00Z, canary_events: 3, canary_trials: 1000,
           baseline_events: 250, baseline_trials: 99000}
      api_response_time:            # latency: bucket bounds (s) once, then histograms per interval
        edges: [0.1, 0.25, 0.5, 1, 2.5]
        samples:                    # one count per edge, then +Inf; not cumulative
          - {observed_at: 2026-11-20T08:55:00Z, canary: [50, 30, 10, 5, 4, 1],
             baseline: [5000, 3000, 1000, 500, 400, 100]}

Event counts (critical bugs, critical issues) are metrics like any other. Bad content raises
``UserError`` with one line naming the file, the line and the field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from rollout_policies.core.measurement import (
    ComparisonSample,
    Evidence,
    LatencySample,
    Measurement,
    Phase,
    RateSample,
)
from rollout_policies.errors import UserError
from rollout_policies.plan.model import CriterionKind, GateComparison, MetricSource, Plan
from rollout_policies.providers.base import (
    DEFAULT_MAX_AGE,
    ComparisonFetch,
    NoValues,
    QueryFailed,
    Reading,
    as_utc,
    measure,
)

_TOP_KEYS = {"observed_at", "stage_started_at", "step_started_at", "metrics", "signoffs", "comparisons"}
_ENTRY_KEYS = {"value", "observed_at", "since", "phase", "message"}
_RATE_KEYS = ("canary_events", "canary_trials", "baseline_events", "baseline_trials")
_LATENCY_KEYS = {"edges", "samples"}


@dataclass(frozen=True, slots=True)
class MetricsFile:
    """What a metrics file holds, as core values."""

    path: str
    measurements: tuple[Measurement, ...]
    signoffs: frozenset[str]
    stage_started_at: datetime | None = None
    step_started_at: datetime | None = None
    samples: tuple[ComparisonSample, ...] = ()

    def evidence(self) -> Evidence:
        return Evidence(self.measurements, self.signoffs, self.samples)

    def check_against(self, plan: Plan) -> None:
        """Every metric and sign-off must be the plan's: a typo would otherwise read as no data."""
        known_metrics = {m.id for m in plan.metrics}
        for metric in sorted({m.metric for m in self.measurements} - known_metrics):
            raise UserError(f"{self.path}: metrics.{metric}: not a metric of plan {plan.name}")
        kinds = {
            gate.metric: gate.comparison.kind.value
            for stage in plan.stages
            for gate in stage.gates
            if gate.comparison is not None
        }
        for sample in self.samples:
            given = "rate" if isinstance(sample, RateSample) else "latency"
            if sample.metric not in kinds:
                raise UserError(
                    f"{self.path}: comparisons.{sample.metric}: no gate of plan {plan.name} compares it"
                )
            if kinds[sample.metric] != given:
                raise UserError(
                    f"{self.path}: comparisons.{sample.metric}: {given} samples, but the plan's comparison "
                    f"is of kind {kinds[sample.metric]}"
                )
        manual = {
            c.id for stage in plan.stages for c in (*stage.go, *stage.no_go) if c.kind is CriterionKind.MANUAL
        }
        for signoff in sorted(self.signoffs - manual):
            raise UserError(
                f"{self.path}: signoffs: {signoff!r} is not a manual criterion of plan {plan.name}"
            )


def load_metrics_file(path: str | Path, *, now: datetime) -> MetricsFile:
    """Read and check a metrics file; ``now`` is the observed_at of entries that give none."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{name}: metrics file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{name}: cannot read the metrics file: {err}") from None
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{name}{where}: not valid YAML or JSON: {err.problem}") from None
    except YAMLError as err:
        raise UserError(f"{name}: not valid YAML or JSON: {err}") from None
    if data is None:
        raise UserError(f"{name}: the metrics file is empty")
    return parse_metrics(data, source=name, now=now)


class MetricsFileProvider:
    """A metrics file as a backend: a metric's newest entry, a comparison gate's samples.

    ``rollout evaluate`` and ``rollout promote`` with ``--metrics-file`` take the whole file as the
    stage's evidence (``evidence``: every entry of a metric's history, for the triggers). A plan metric
    whose source is ``provider: metrics_file`` reads its entry (key: ``options.key``, else ``query``,
    else the metric id) from the file ``ROLLOUT_METRICS_FILE`` names. The file is read once, on first
    use; a file that cannot be read makes every query an ``error`` measurement, never a raise.
    """

    name = "metrics_file"

    def __init__(self, *, path: str | Path | None = None, now: datetime | None = None) -> None:
        if not path:
            raise UserError("metrics_file: no file (set ROLLOUT_METRICS_FILE or pass --metrics-file)")
        self.path = str(path)
        self._now = now  # observed_at of entries that give none; else the first query's "now"
        self._file: MetricsFile | None = None

    def file(self, now: datetime | None = None) -> MetricsFile:
        """The file's content; a UserError names the file, line and field of bad content."""
        if self._file is None:
            moment = self._now or now
            if moment is None:
                raise ValueError("metrics_file: reading the file needs a time for entries without one")
            self._file = load_metrics_file(self.path, now=as_utc(moment))
        return self._file

    def evidence(self, plan: Plan, signoffs: Iterable[str] = ()) -> Evidence:
        """The whole file as a stage's evidence, checked against the plan (a typo is not no data)."""
        loaded = self.file()
        loaded.check_against(plan)
        return Evidence.of(loaded.measurements, loaded.signoffs | set(signoffs), samples=loaded.samples)

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        key = str(source.options.get("key") or source.query.strip() or metric)

        def read() -> Reading:
            try:
                entries = [m for m in self.file(now).measurements if m.metric == key]
            except UserError as err:
                raise QueryFailed(str(err)) from None
            if not entries:
                raise NoValues(f"{self.path} has no entry for {key!r}")
            newest = max(entries, key=lambda m: m.observed_at)
            if newest.phase is Phase.ERROR:
                raise QueryFailed(newest.message or f"{key}: phase error")
            if newest.phase is Phase.NO_DATA:
                raise NoValues(newest.message or f"{key}: phase no_data")
            return Reading(newest.value, newest.observed_at)

        # One attempt: a file is not transient.
        return measure(self.name, metric, source, now, read, attempts=1)

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
        """The file's samples for ``metric`` from ``since`` on (all of them without ``since``).

        A file's samples are already the two versions' totals: there are no segments to leave out.
        """
        found: list[ComparisonSample] = []

        def read() -> Reading:
            try:
                samples = [s for s in self.file(now).samples if s.metric == metric]
            except UserError as err:
                raise QueryFailed(str(err)) from None
            samples = sorted(
                (s for s in samples if since is None or s.observed_at >= as_utc(since)),
                key=lambda s: s.observed_at,
            )
            if not samples:
                raise NoValues(f"{self.path} has no comparison samples for {metric!r}")
            found.extend(samples)
            return Reading(float(len(samples)), samples[-1].observed_at)

        source = MetricSource(provider=self.name, query=f"comparisons.{metric}", max_age=max_age)
        measurement = measure(f"{self.name} comparison", metric, source, now, read, attempts=1)
        return ComparisonFetch(metric, measurement, tuple(found))

    def is_online(self) -> bool:
        return Path(self.path).is_file()


def parse_metrics(data: Any, *, source: str, now: datetime) -> MetricsFile:
    """Turn loaded YAML/JSON content into a MetricsFile, or a UserError naming the field."""
    reader = _Reader(source)
    if not isinstance(data, dict):
        raise reader.error(data, None, "", "the top level must be a mapping with a 'metrics' key")
    reader.no_unknown_keys(data, "", _TOP_KEYS)
    if "metrics" not in data:
        raise reader.error(data, None, "", "'metrics' is missing")
    default_at = reader.time(data, "observed_at", "observed_at") if "observed_at" in data else now
    stage_started = (
        reader.time(data, "stage_started_at", "stage_started_at") if "stage_started_at" in data else None
    )
    step_started = (
        reader.time(data, "step_started_at", "step_started_at") if "step_started_at" in data else None
    )

    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        raise reader.error(data, "metrics", "metrics", "must be a mapping of metric id to a value")
    measurements: list[Measurement] = []
    for metric_id, entry in metrics.items():
        field = f"metrics.{metric_id}"
        if isinstance(entry, list):
            if not entry:
                raise reader.error(metrics, metric_id, field, "an empty list: give at least one measurement")
            for index, item in enumerate(entry):
                measurements.append(
                    reader.entry(str(metric_id), item, entry, index, f"{field}[{index}]", default_at)
                )
        else:
            measurements.append(reader.entry(str(metric_id), entry, metrics, metric_id, field, default_at))

    signoffs = data.get("signoffs", [])
    if signoffs is None:
        signoffs = []
    if not isinstance(signoffs, list) or not all(isinstance(s, str) for s in signoffs):
        raise reader.error(data, "signoffs", "signoffs", "must be a list of criterion ids")
    samples = reader.comparisons(data) if data.get("comparisons") is not None else ()
    return MetricsFile(source, tuple(measurements), frozenset(signoffs), stage_started, step_started, samples)


class _Reader:
    """Field readers that know where each value sits in the file, for one-line errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, parent: Any, key: Any, field: str, problem: str) -> UserError:
        line = _line(parent, key)
        where = f":{line}" if line else ""
        prefix = f" {field}:" if field else ""
        return UserError(f"{self.source}{where}:{prefix} {problem}")

    def no_unknown_keys(self, mapping: dict[Any, Any], field: str, allowed: Iterable[str]) -> None:
        for key in mapping:
            if key not in allowed:
                path = f"{field}.{key}" if field else str(key)
                raise self.error(
                    mapping, key, path, f"unknown key (expected one of: {', '.join(sorted(allowed))})"
                )

    def time(self, parent: Any, key: Any, field: str) -> datetime:
        value = parent[key]
        if isinstance(value, datetime):
            moment = datetime.fromisoformat(value.isoformat())
        elif isinstance(value, date):
            raise self.error(parent, key, field, f"{value} is a date; give a time such as {value}T09:00:00Z")
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise self.error(
                    parent, key, field, f"not a time: {value!r} (write 2026-11-20T09:00:00Z)"
                ) from None
        else:
            raise self.error(parent, key, field, f"not a time: {value!r} (write 2026-11-20T09:00:00Z)")
        if moment.tzinfo is None:
            raise self.error(parent, key, field, f"{value} needs a time zone (write it as ...Z)")
        return moment

    def number(self, parent: Any, key: Any, field: str) -> float:
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(parent, key, field, f"not a finite number: {value!r}")
        return float(value)

    def entry(
        self, metric_id: str, entry: Any, parent: Any, key: Any, field: str, default_at: datetime
    ) -> Measurement:
        if not isinstance(entry, dict):
            self.number(parent, key, field)  # a bare value must be a number
            return Measurement.ok(metric_id, float(entry), default_at)
        self.no_unknown_keys(entry, field, _ENTRY_KEYS)
        raw_phase = entry.get("phase", "ok")
        try:
            phase = Phase(raw_phase)
        except ValueError:
            choices = ", ".join(p.value for p in Phase)
            raise self.error(
                entry, "phase", f"{field}.phase", f"{raw_phase!r} is not one of {choices}"
            ) from None
        observed_at = (
            self.time(entry, "observed_at", f"{field}.observed_at") if "observed_at" in entry else default_at
        )
        message = entry.get("message", "")
        if not isinstance(message, str):
            raise self.error(entry, "message", f"{field}.message", "must be text")
        since = self.time(entry, "since", f"{field}.since") if "since" in entry else None
        if since is not None and since > observed_at:
            raise self.error(entry, "since", f"{field}.since", "is after observed_at")
        if phase is Phase.OK:
            if "value" not in entry:
                raise self.error(entry, None, field, "phase ok needs a value")
            value = self.number(entry, "value", f"{field}.value")
            return Measurement.ok(metric_id, value, observed_at, message, since=since)
        if entry.get("value") is not None:
            raise self.error(entry, "value", f"{field}.value", f"phase {phase.value} carries no value")
        return Measurement(metric_id, phase, None, observed_at, message, since)

    def comparisons(self, data: dict[Any, Any]) -> tuple[ComparisonSample, ...]:
        """``comparisons``: per metric, a list of rate counts or ``{edges, samples}`` of histograms."""
        block = data["comparisons"]
        if not isinstance(block, dict):
            raise self.error(data, "comparisons", "comparisons", "must be a mapping of metric id to samples")
        out: list[ComparisonSample] = []
        for metric_id, entry in block.items():
            field = f"comparisons.{metric_id}"
            if isinstance(entry, list):
                out += [
                    self.rate_sample(str(metric_id), item, entry, i, f"{field}[{i}]")
                    for i, item in enumerate(entry)
                ]
            elif isinstance(entry, dict):
                self.no_unknown_keys(entry, field, _LATENCY_KEYS)
                for key in sorted(_LATENCY_KEYS - set(entry)):
                    raise self.error(block, metric_id, field, f"a latency comparison needs {key}")
                edges = self.numbers(entry, "edges", f"{field}.edges")
                items = entry["samples"]
                if not isinstance(items, list):
                    raise self.error(entry, "samples", f"{field}.samples", "must be a list of histograms")
                out += [
                    self.latency_sample(str(metric_id), edges, item, items, i, f"{field}.samples[{i}]")
                    for i, item in enumerate(items)
                ]
            else:
                raise self.error(
                    block, metric_id, field, "must be a list of rate counts or a mapping {edges, samples}"
                )
        return tuple(out)

    def rate_sample(self, metric_id: str, item: Any, parent: Any, key: Any, field: str) -> RateSample:
        if not isinstance(item, dict):
            raise self.error(
                parent, key, field, f"must be a mapping of observed_at and {', '.join(_RATE_KEYS)}"
            )
        self.no_unknown_keys(item, field, {"observed_at", *_RATE_KEYS})
        for name in ("observed_at", *_RATE_KEYS):
            if name not in item:
                raise self.error(parent, key, field, f"{name} is missing")
        counts = [self.number(item, name, f"{field}.{name}") for name in _RATE_KEYS]
        try:
            return RateSample(metric_id, self.time(item, "observed_at", f"{field}.observed_at"), *counts)
        except ValueError as err:
            raise self.error(parent, key, field, _after_colon(err)) from None

    def latency_sample(
        self, metric_id: str, edges: tuple[float, ...], item: Any, parent: Any, key: Any, field: str
    ) -> LatencySample:
        if not isinstance(item, dict):
            raise self.error(parent, key, field, "must be a mapping of observed_at, canary and baseline")
        self.no_unknown_keys(item, field, {"observed_at", "canary", "baseline"})
        for name in ("observed_at", "canary", "baseline"):
            if name not in item:
                raise self.error(parent, key, field, f"{name} is missing")
        at = self.time(item, "observed_at", f"{field}.observed_at")
        canary = self.numbers(item, "canary", f"{field}.canary")
        baseline = self.numbers(item, "baseline", f"{field}.baseline")
        try:
            return LatencySample(metric_id, at, edges, canary, baseline)
        except ValueError as err:
            raise self.error(parent, key, field, _after_colon(err)) from None

    def numbers(self, parent: Any, key: Any, field: str) -> tuple[float, ...]:
        values = parent[key]
        if not isinstance(values, list) or not values:
            raise self.error(parent, key, field, "must be a list of numbers")
        for index in range(len(values)):
            self.number(values, index, f"{field}[{index}]")
        return tuple(float(v) for v in values)


def _after_colon(err: ValueError) -> str:
    """A core validation message without its own "counts of <metric>:" prefix (the field says it)."""
    text = str(err)
    return text.split(": ", 1)[1] if ": " in text else text


def _line(parent: Any, key: Any) -> int | None:
    """1-based line of ``parent[key]`` (or of ``parent`` itself), when the YAML loader recorded it."""
    lc = getattr(parent, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(parent, list):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1
