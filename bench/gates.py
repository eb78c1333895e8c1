"""Canary-versus-baseline gate benchmark: the sequential comparison against Flagger- and Kayenta-style gates.

Run: ``python -m bench.gates`` (``make bench-gates``). A fixed-seed simulation of canary and baseline
traffic, aggregated per 10 s tick, over a 2-hour analysis window. Every gate sees the same simulated
streams in one run. Writes ``bench/results/gates.md`` and the generated section of
``docs/statistics.md``. Options: ``--quick`` (a fifth of the runs, writes nothing), ``--no-write``,
``--workers N``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats

from rollout_policies.core.sequential import LatencyComparisonBatch, RateComparisonBatch

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
# One tick's observations per stream, from (rng, traffic factor, incident factor).
Draw = Callable[[np.random.Generator, FloatArray, FloatArray], dict[str, FloatArray]]

SEED = 20261125
TOTAL_RPS = 1000.0  # requests per second over both versions: 1% canary = 10 req/s
TICK_S = 10  # the comparison is fed one aggregated observation per tick
HORIZON_S = 2 * 3600  # the analysis window of one simulated canary stage
TICKS = HORIZON_S // TICK_S
MINUTE_TICKS = 60 // TICK_S

CANARY_SHARES = (0.01, 0.10)
BASELINE_RATES = (0.001, 0.01)
MULTIPLIERS = (1.0, 1.25, 1.5, 2.0, 5.0)
NUISANCES = ("none", "diurnal", "bursts", "overdispersion")
LATENCY_SHIFTS = (1.0, 1.1, 1.25, 1.5)
LATENCY_NUISANCES = ("none", "diurnal+bursts")

RUNS_NULL = 500  # per no-regression cell: the false-rollback rate needs many runs
RUNS_REGRESSION = 200

# Nuisance parameters.
DIURNAL_AMPLITUDE = 0.6  # load swings +-60% over 24 h; the run starts at a random time of day
BURST_EVERY_S = 1800.0  # a shared incident (a dependency failing) about every 30 minutes
BURST_TICKS = (6, 30)  # lasting 1 to 5 minutes
BURST_FACTOR = (5.0, 20.0)  # multiplying both versions' error rate
OVERDISPERSION_SHAPE = 4.0  # per version and tick, the error rate is scaled by Gamma(4, 1/4): CV 0.5

# Latency model: log-normal, median 120 ms, sigma 0.5; 20 histogram buckets log-spaced 10 ms to 10 s.
LATENCY_MEDIAN_S = 0.120
LATENCY_SIGMA = 0.5
LATENCY_EDGES = np.geomspace(0.010, 10.0, 20)

# Anchor gate settings.
ALPHA = 0.01  # the sequential gate's guaranteed false-rollback bound
FLAGGER_PLAN_THRESHOLD = 0.01  # the plan's API error rate alert (> 1%)
FLAGGER_FAILURE_LIMIT = 5  # Flagger's `threshold`: failed checks before rollback
FLAGGER_LATENCY_P99_S = 0.5  # Flagger's built-in request-duration check: p99 < 500 ms
KAYENTA_INTERVAL_TICKS = 60  # judged every 10 minutes on 1-minute points since the start
KAYENTA_ALPHA = 0.01  # one-sided; Kayenta's judge uses a 98% two-sided Mann-Whitney interval
NAIVE_ALPHA = 0.05  # a z-test on the running totals at every tick: the negative control

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gates.md"
DOCS = ROOT / "docs" / "statistics.md"
BEGIN = "<!-- BEGIN GENERATED: python -m bench.gates -->"
END = "<!-- END GENERATED -->"


@dataclass(frozen=True)
class Cell:
    """One scenario of the grid; its runs are contiguous streams in the simulation arrays."""

    kind: str  # "rate" or "latency"
    canary_share: float
    baseline_rate: float  # error rate (rate cells); unused for latency
    multiplier: float  # error-rate multiplier, or latency scale factor
    nuisance: str
    runs: int
    start: int = 0

    @property
    def regression(self) -> bool:
        return self.multiplier != 1.0

    @property
    def stop(self) -> int:
        return self.start + self.runs


def build_cells(kind: str, quick: bool) -> list[Cell]:
    scale = 5 if quick else 1
    cells: list[Cell] = []
    start = 0

    def add(share: float, base: float, mult: float, nuisance: str) -> None:
        nonlocal start
        runs = (RUNS_REGRESSION if mult != 1.0 else RUNS_NULL) // scale
        cells.append(Cell(kind, share, base, mult, nuisance, runs, start))
        start += runs

    if kind == "rate":
        for nuisance in NUISANCES:
            for share in CANARY_SHARES:
                for base in BASELINE_RATES:
                    for mult in MULTIPLIERS:
                        add(share, base, mult, nuisance)
    else:
        for nuisance in LATENCY_NUISANCES:
            for share in CANARY_SHARES:
                for shift in LATENCY_SHIFTS:
                    add(share, 0.0, shift, nuisance)
    return cells


def per_stream(cells: list[Cell], attr: str) -> FloatArray:
    return np.concatenate([np.full(c.runs, float(getattr(c, attr))) for c in cells])


def nuisance_mask(cells: list[Cell], word: str) -> BoolArray:
    return np.concatenate([np.full(c.runs, word in c.nuisance) for c in cells])


class Load:
    """Shared load and incident factors per stream and tick: the nuisances that hit both versions."""

    def __init__(self, rng: np.random.Generator, n: int, diurnal: BoolArray, bursts: BoolArray) -> None:
        self.rng = rng
        self.n = n
        self.diurnal = diurnal
        self.bursts = bursts
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.burst_left = np.zeros(n, dtype=np.int64)
        self.burst_factor = np.ones(n)

    def step(self, tick: int) -> tuple[FloatArray, FloatArray]:
        """Return (traffic factor, incident factor) for this tick."""
        angle = 2 * np.pi * tick * TICK_S / 86400 + self.phase
        traffic = np.where(self.diurnal, 1 + DIURNAL_AMPLITUDE * np.sin(angle), 1.0)
        start = self.bursts & (self.burst_left == 0) & (self.rng.random(self.n) < TICK_S / BURST_EVERY_S)
        self.burst_left = np.where(
            start, self.rng.integers(BURST_TICKS[0], BURST_TICKS[1] + 1, self.n), self.burst_left
        )
        self.burst_factor = np.where(start, self.rng.uniform(*BURST_FACTOR, self.n), self.burst_factor)
        incident = np.where(self.burst_left > 0, self.burst_factor, 1.0)
        self.burst_left = np.maximum(self.burst_left - 1, 0)
        return traffic, incident


# --------------------------------------------------------------------------------------------- gates


class Gate:
    """A rollback gate over all streams: ``step`` returns which streams roll back at this tick."""

    name = ""
    note = ""

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        raise NotImplementedError


class SequentialRate(Gate):
    def __init__(self, n: int, *, dispersion: float | None) -> None:
        self.cmp = RateComparisonBatch(n, alpha=ALPHA, dispersion=dispersion)
        self.name = "sequential (this project)" if dispersion is None else "sequential, no dispersion fix"
        self.note = f"RateComparison(alpha={ALPHA}), e-process checked every {TICK_S} s" + (
            "" if dispersion is None else ", dispersion fixed at 1 (ablation)"
        )
        self.cleared_at = np.full(n, np.inf)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        codes = self.cmp.observe(obs["xc"], obs["nc"], obs["xb"], obs["nb"])
        self.cleared_at = np.where((codes == 2) & np.isinf(self.cleared_at), tick + 1, self.cleared_at)
        out: BoolArray = codes == 1
        return out


class FlaggerRate(Gate):
    """Canary error rate per 1-minute interval above a fixed threshold; roll back at the failure limit."""

    def __init__(self, n: int, threshold: FloatArray, label: str) -> None:
        self.threshold = threshold
        self.failed = np.zeros(n, dtype=np.int64)
        self.xc = np.zeros(n)
        self.nc = np.zeros(n)
        self.name = f"Flagger-style, {label}"
        self.note = (
            f"error rate per 1-min interval {label}, rollback after {FLAGGER_FAILURE_LIMIT} failed checks"
        )

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.xc += obs["xc"]
        self.nc += obs["nc"]
        if (tick + 1) % MINUTE_TICKS == 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(self.nc > 0, self.xc / self.nc, np.nan)
            # Flagger halts on "no values found"; here every minute has traffic, so NaN never occurs.
            self.failed += (rate > self.threshold).astype(np.int64)
            self.xc[:] = 0
            self.nc[:] = 0
        out: BoolArray = self.failed >= FLAGGER_FAILURE_LIMIT
        return out


class KayentaRate(Gate):
    """Mann-Whitney U on 1-minute error-rate points, canary vs baseline, judged at each interval's end."""

    name = "Kayenta-style Mann-Whitney"
    note = (
        f"1-min error-rate points since the start, judged every {KAYENTA_INTERVAL_TICKS * TICK_S // 60} min, "
        f"one-sided p < {KAYENTA_ALPHA}"
    )

    def __init__(self, n: int) -> None:
        minutes = TICKS // MINUTE_TICKS
        self.canary = np.zeros((n, minutes))
        self.baseline = np.zeros((n, minutes))
        self.acc = np.zeros((4, n))
        self.failed = np.zeros(n, dtype=bool)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.acc += np.stack([obs["xc"], obs["nc"], obs["xb"], obs["nb"]])
        if (tick + 1) % MINUTE_TICKS == 0:
            minute = (tick + 1) // MINUTE_TICKS - 1
            xc, nc, xb, nb = self.acc
            self.canary[:, minute] = np.where(nc > 0, xc / np.maximum(nc, 1), 0.0)
            self.baseline[:, minute] = np.where(nb > 0, xb / np.maximum(nb, 1), 0.0)
            self.acc[:] = 0
        if (tick + 1) % KAYENTA_INTERVAL_TICKS == 0:
            minutes = (tick + 1) // MINUTE_TICKS
            p = stats.mannwhitneyu(
                self.canary[:, :minutes],
                self.baseline[:, :minutes],
                axis=1,
                alternative="greater",
                method="asymptotic",
            ).pvalue
            self.failed |= np.nan_to_num(p, nan=1.0) < KAYENTA_ALPHA
        return self.failed


class NaiveRate(Gate):
    """A one-sided two-proportion z-test on the running totals at every tick (negative control)."""

    name = "naive repeated z-test"
    note = f"pooled two-proportion z-test on running totals every {TICK_S} s, p < {NAIVE_ALPHA}"

    def __init__(self, n: int) -> None:
        self.tot = np.zeros((4, n))
        self.z_crit = float(stats.norm.isf(NAIVE_ALPHA))
        self.failed = np.zeros(n, dtype=bool)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.tot += np.stack([obs["xc"], obs["nc"], obs["xb"], obs["nb"]])
        self.failed |= two_proportion_z(*self.tot) > self.z_crit
        return self.failed


def two_proportion_z(xc: FloatArray, nc: FloatArray, xb: FloatArray, nb: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (xc + xb) / (nc + nb)
        se = np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nb))
        z = (xc / nc - xb / nb) / se
    out: FloatArray = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    return out


# ------------------------------------------------------------------------------------- latency gates


def hist_quantile(hist: FloatArray, q: float) -> FloatArray:
    """A histogram's q-quantile as Prometheus' histogram_quantile computes it.

    Linear interpolation inside the bucket that holds the rank (the first bucket starts at 0); a
    rank in the +Inf bucket gives the highest finite bound. NaN where there is no data.
    """
    total = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    rank = q * total
    idx = np.argmax(cum >= rank[:, None], axis=1)
    rows = np.arange(hist.shape[0])
    upper_edges = np.concatenate([LATENCY_EDGES, [LATENCY_EDGES[-1]]])
    lower_edges = np.concatenate([[0.0], LATENCY_EDGES])
    below = np.where(idx > 0, cum[rows, np.maximum(idx - 1, 0)], 0.0)
    inside = hist[rows, idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(inside > 0, (rank - below) / inside, 1.0)
    value = lower_edges[idx] + (upper_edges[idx] - lower_edges[idx]) * frac
    value = np.where(idx == LATENCY_EDGES.size, LATENCY_EDGES[-1], value)
    out: FloatArray = np.where(total > 0, value, np.nan)
    return out


class SequentialLatency(Gate):
    name = "sequential (this project)"
    note = f"LatencyComparison(quantile=0.95, alpha={ALPHA}) on per-tick histograms"

    def __init__(self, n: int) -> None:
        self.cmp = LatencyComparisonBatch(n, LATENCY_EDGES, quantile=0.95, alpha=ALPHA)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        out: BoolArray = self.cmp.observe(obs["hc"], obs["hb"]) == 1
        return out


class FlaggerLatency(Gate):
    name = "Flagger-style, p99 > 500 ms"
    note = f"canary p99 per 1-min interval > 500 ms, rollback after {FLAGGER_FAILURE_LIMIT} failed checks"

    def __init__(self, n: int) -> None:
        self.hist = np.zeros((n, LATENCY_EDGES.size + 1))
        self.failed = np.zeros(n, dtype=np.int64)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.hist += obs["hc"]
        if (tick + 1) % MINUTE_TICKS == 0:
            self.failed += (hist_quantile(self.hist, 0.99) > FLAGGER_LATENCY_P99_S).astype(np.int64)
            self.hist[:] = 0
        out: BoolArray = self.failed >= FLAGGER_FAILURE_LIMIT
        return out


class KayentaLatency(Gate):
    name = "Kayenta-style Mann-Whitney"
    note = "1-min p95 points since the start, judged every 10 min, one-sided p < 0.01"

    def __init__(self, n: int) -> None:
        minutes = TICKS // MINUTE_TICKS
        self.canary = np.zeros((n, minutes))
        self.baseline = np.zeros((n, minutes))
        self.hc = np.zeros((n, LATENCY_EDGES.size + 1))
        self.hb = np.zeros((n, LATENCY_EDGES.size + 1))
        self.failed = np.zeros(n, dtype=bool)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.hc += obs["hc"]
        self.hb += obs["hb"]
        if (tick + 1) % MINUTE_TICKS == 0:
            minute = (tick + 1) // MINUTE_TICKS - 1
            self.canary[:, minute] = np.nan_to_num(hist_quantile(self.hc, 0.95), nan=0.0)
            self.baseline[:, minute] = np.nan_to_num(hist_quantile(self.hb, 0.95), nan=0.0)
            self.hc[:] = 0
            self.hb[:] = 0
        if (tick + 1) % KAYENTA_INTERVAL_TICKS == 0:
            minutes = (tick + 1) // MINUTE_TICKS
            p = stats.mannwhitneyu(
                self.canary[:, :minutes],
                self.baseline[:, :minutes],
                axis=1,
                alternative="greater",
                method="asymptotic",
            ).pvalue
            self.failed |= np.nan_to_num(p, nan=1.0) < KAYENTA_ALPHA
        return self.failed


class NaiveLatency(Gate):
    name = "naive repeated z-test"
    note = "z-test on running counts beyond the baseline's running p95 every 10 s, p < 0.05"

    def __init__(self, n: int) -> None:
        self.tot = np.zeros((4, n))
        self.hb = np.zeros((n, LATENCY_EDGES.size + 1))
        self.z_crit = float(stats.norm.isf(NAIVE_ALPHA))
        self.failed = np.zeros(n, dtype=bool)

    def step(self, tick: int, obs: dict[str, FloatArray]) -> BoolArray:
        if tick > 0:
            cut = np.argmax(np.cumsum(self.hb, axis=1) >= 0.95 * self.hb.sum(axis=1)[:, None], axis=1) + 1
            slow = np.arange(self.hb.shape[1])[None, :] >= cut[:, None]
            hc, hb = obs["hc"], obs["hb"]
            self.tot += np.stack([(hc * slow).sum(1), hc.sum(1), (hb * slow).sum(1), hb.sum(1)])
            self.failed |= two_proportion_z(*self.tot) > self.z_crit
        self.hb += obs["hb"]
        return self.failed


# -------------------------------------------------------------------------------------- simulation


@dataclass
class Outcome:
    """Per gate: the tick of the first rollback per stream (inf: none) and errors served before it."""

    name: str
    note: str
    rollback_tick: FloatArray
    errors_served: FloatArray
    cleared_at: FloatArray | None = None  # this project's gate: first NO_REGRESSION tick


def simulate(cells: list[Cell], seed: np.random.SeedSequence, progress: str) -> list[Outcome]:
    """Run every gate over the streams of ``cells`` (re-based to start at 0) for the whole window."""
    first = cells[0].start
    cells = [
        Cell(c.kind, c.canary_share, c.baseline_rate, c.multiplier, c.nuisance, c.runs, c.start - first)
        for c in cells
    ]
    rng = np.random.default_rng(seed)
    n = cells[-1].stop
    if cells[0].kind == "rate":
        gates, draw = rate_gates(n, cells), rate_draw(cells)
    else:
        gates, draw = latency_gates(n, cells), latency_draw(cells)
    load = Load(rng, n, nuisance_mask(cells, "diurnal"), nuisance_mask(cells, "bursts"))
    outcomes = [Outcome(g.name, g.note, np.full(n, np.inf), np.zeros(n)) for g in gates]
    canary_errors = np.zeros(n)
    t0 = time.perf_counter()
    for tick in range(TICKS):
        traffic, incident = load.step(tick)
        obs = draw(rng, traffic, incident)
        canary_errors += obs.get("xc", np.zeros(n))
        for gate, out in zip(gates, outcomes, strict=True):
            fired = gate.step(tick, obs) & np.isinf(out.rollback_tick)
            out.rollback_tick[fired] = tick + 1
            out.errors_served[fired] = canary_errors[fired]
        if (tick + 1) % 180 == 0:
            print(
                f"  {progress}: {(tick + 1) * TICK_S // 60} of {HORIZON_S // 60} simulated min, "
                f"{time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    for gate, out in zip(gates, outcomes, strict=True):
        never = np.isinf(out.rollback_tick)
        out.errors_served[never] = canary_errors[never]
        if isinstance(gate, SequentialRate) and gate.cmp.fixed_dispersion is None:
            out.cleared_at = gate.cleared_at
    return outcomes


def _run_chunk(task: tuple[list[Cell], np.random.SeedSequence, str]) -> list[Outcome]:
    return simulate(*task)


def run_all(chunks: list[list[Cell]], workers: int) -> list[list[Outcome]]:
    """Simulate contiguous chunks of cells, in parallel processes, each with its own seed stream."""
    seeds = np.random.SeedSequence(SEED).spawn(len(chunks))
    tasks = [
        (chunk, seed, f"{chunk[0].kind} {chunk[0].nuisance}..{chunk[-1].nuisance}")
        for chunk, seed in zip(chunks, seeds, strict=True)
    ]
    if workers <= 1:
        return [_run_chunk(t) for t in tasks]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(_run_chunk, tasks, chunksize=1)


def merge(parts: list[list[Outcome]]) -> list[Outcome]:
    """Concatenate chunk results gate by gate (chunks are contiguous and in order)."""
    merged = []
    for gate_parts in zip(*parts, strict=True):
        cleared = [p.cleared_at for p in gate_parts]
        merged.append(
            Outcome(
                gate_parts[0].name,
                gate_parts[0].note,
                np.concatenate([p.rollback_tick for p in gate_parts]),
                np.concatenate([p.errors_served for p in gate_parts]),
                None
                if any(c is None for c in cleared)
                else np.concatenate([c for c in cleared if c is not None]),
            )
        )
    return merged


def rate_draw(
    cells: list[Cell],
) -> Draw:
    share = per_stream(cells, "canary_share")
    base = per_stream(cells, "baseline_rate")
    mult = per_stream(cells, "multiplier")
    overdispersed = nuisance_mask(cells, "overdispersion")
    diurnal = nuisance_mask(cells, "diurnal")
    n = share.size

    def draw(rng: np.random.Generator, traffic: FloatArray, incident: FloatArray) -> dict[str, FloatArray]:
        requests = TOTAL_RPS * TICK_S * traffic
        nc = rng.poisson(requests * share).astype(np.float64)
        nb = rng.poisson(requests * (1 - share)).astype(np.float64)
        # Busy hours are a little more error-prone for both versions.
        shared = incident * np.where(diurnal, traffic, 1.0)
        k = OVERDISPERSION_SHAPE
        noise_c = np.where(overdispersed, rng.gamma(k, 1 / k, n), 1.0)
        noise_b = np.where(overdispersed, rng.gamma(k, 1 / k, n), 1.0)
        pc = np.minimum(base * mult * shared * noise_c, 1.0)
        pb = np.minimum(base * shared * noise_b, 1.0)
        xc = rng.binomial(nc.astype(np.int64), pc).astype(np.float64)
        xb = rng.binomial(nb.astype(np.int64), pb).astype(np.float64)
        return {"xc": xc, "nc": nc, "xb": xb, "nb": nb}

    return draw


def latency_draw(
    cells: list[Cell],
) -> Draw:
    share = per_stream(cells, "canary_share")
    shift = per_stream(cells, "multiplier")
    edges = np.log(LATENCY_EDGES)

    def bucket_probs(scale: FloatArray) -> FloatArray:
        cdf = stats.norm.cdf((edges[None, :] - np.log(LATENCY_MEDIAN_S * scale)[:, None]) / LATENCY_SIGMA)
        cdf = np.concatenate([np.zeros((scale.size, 1)), cdf, np.ones((scale.size, 1))], axis=1)
        probs: FloatArray = np.diff(cdf, axis=1)
        return probs / probs.sum(axis=1, keepdims=True)

    def draw(rng: np.random.Generator, traffic: FloatArray, incident: FloatArray) -> dict[str, FloatArray]:
        requests = TOTAL_RPS * TICK_S * traffic
        nc = rng.poisson(requests * share)
        nb = rng.poisson(requests * (1 - share))
        # Load and incidents slow both versions alike: an incident factor of 5-20 on errors is a
        # 1.4-2.5x slowdown here (its square root's square root, to stay in a plausible range).
        slow = np.sqrt(np.sqrt(incident)) * (1 + 0.2 * (traffic - 1))
        hc = rng.multinomial(nc, bucket_probs(slow * shift)).astype(np.float64)
        hb = rng.multinomial(nb, bucket_probs(slow)).astype(np.float64)
        return {"hc": hc, "hb": hb}

    return draw


def rate_gates(n: int, cells: list[Cell]) -> list[Gate]:
    base = per_stream(cells, "baseline_rate")
    return [
        SequentialRate(n, dispersion=None),
        SequentialRate(n, dispersion=1.0),
        FlaggerRate(n, np.full(n, FLAGGER_PLAN_THRESHOLD), "> 1% (plan alert)"),
        FlaggerRate(n, 2 * base, "> 2x baseline rate"),
        KayentaRate(n),
        NaiveRate(n),
    ]


def latency_gates(n: int, cells: list[Cell]) -> list[Gate]:
    return [SequentialLatency(n), FlaggerLatency(n), KayentaLatency(n), NaiveLatency(n)]


# ----------------------------------------------------------------------------------------- report


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fmt_minutes(ticks: float) -> str:
    if not np.isfinite(ticks):
        return f">{HORIZON_S // 60}"
    minutes = ticks * TICK_S / 60
    return f"{minutes:.1f}" if minutes < 10 else f"{minutes:.0f}"


def detect_summary(rollback_tick: FloatArray) -> tuple[str, str, float]:
    """Median and p90 minutes to rollback (censored runs count as never) and the detected share."""
    ordered = np.sort(rollback_tick)
    med = float(np.quantile(ordered, 0.5, method="higher"))
    p90 = float(np.quantile(ordered, 0.9, method="higher"))
    return fmt_minutes(med), fmt_minutes(p90), float(np.isfinite(rollback_tick).mean())


def fmt_rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def cell_label(c: Cell) -> str:
    if c.kind == "rate":
        return f"{c.canary_share:.0%} canary, {c.baseline_rate:.1%} base, {c.nuisance}"
    return f"{c.canary_share:.0%} canary, {c.nuisance}"


def group_rows(cells: list[Cell]) -> dict[str, list[Cell]]:
    rows: dict[str, list[Cell]] = {}
    for c in cells:
        rows.setdefault(cell_label(c), []).append(c)
    return rows


def gate_table(cells: list[Cell], out: Outcome, *, errors: bool) -> list[str]:
    mults = sorted({c.multiplier for c in cells})
    header = ["scenario", "no regression: false rollbacks [95% CI]"]
    for m in mults[1:]:
        header.append(f"x{m:g}: median / p90 min" + (" / errors" if errors else ""))
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label, row in group_rows(cells).items():
        parts = [label]
        for c in row:
            ticks = out.rollback_tick[c.start : c.stop]
            if not c.regression:
                parts.append(fmt_rate(int(np.isfinite(ticks).sum()), c.runs))
                continue
            med, p90, _ = detect_summary(ticks)
            cell_text = f"{med} / {p90}"
            if errors:
                cell_text += f" / {np.median(out.errors_served[c.start : c.stop]):.0f}"
            parts.append(cell_text)
        lines.append("| " + " | ".join(parts) + " |")
    return lines


def summary_table(
    rate_cells: list[Cell], rate_out: list[Outcome], lat_cells: list[Cell], lat_out: list[Outcome]
) -> list[str]:
    """One line per gate: pooled false rollbacks and the three acceptance cells."""

    def find(share: float, base: float, mult: float) -> Cell:
        return next(
            c
            for c in rate_cells
            if (c.canary_share, c.baseline_rate, c.multiplier, c.nuisance) == (share, base, mult, "none")
        )

    a = find(0.01, 0.01, 2.0)
    b1 = find(0.01, 0.001, 2.0)
    b10 = find(0.10, 0.001, 2.0)
    lines = [
        "| gate | false rollbacks, all rate no-regression runs [95% CI] | false rollbacks, latency "
        "[95% CI] | 2x, 1% canary, 1% base: median min | 2x, 0.1% base, 1% canary: median min | "
        "2x, 0.1% base, 10% canary: median min |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lat_by_name = {o.name: o for o in lat_out}
    for out in rate_out:
        null = np.concatenate([out.rollback_tick[c.start : c.stop] for c in rate_cells if not c.regression])
        lat = lat_by_name.get(out.name)
        lat_text = "—"
        if lat is not None:
            lat_null = np.concatenate(
                [lat.rollback_tick[c.start : c.stop] for c in lat_cells if not c.regression]
            )
            lat_text = fmt_rate(int(np.isfinite(lat_null).sum()), lat_null.size)
        meds = [detect_summary(out.rollback_tick[c.start : c.stop])[0] for c in (a, b1, b10)]
        lines.append(
            f"| {out.name} | {fmt_rate(int(np.isfinite(null).sum()), null.size)} | {lat_text} | "
            + " | ".join(meds)
            + " |"
        )
    return lines


def acceptance(rate_cells: list[Cell], rate_out: list[Outcome]) -> list[str]:
    ours = rate_out[0]
    null = np.concatenate([ours.rollback_tick[c.start : c.stop] for c in rate_cells if not c.regression])
    k, n = int(np.isfinite(null).sum()), null.size
    lines = []
    ok = k / n <= 0.01
    lines.append(
        f"- {'met' if ok else 'NOT MET'}: false-rollback rate with no regression "
        f"{fmt_rate(k, n)} (all nuisances pooled; required <= 1%)"
    )
    worst = max(
        (c for c in rate_cells if not c.regression),
        key=lambda c: np.isfinite(ours.rollback_tick[c.start : c.stop]).mean(),
    )
    wk = int(np.isfinite(ours.rollback_tick[worst.start : worst.stop]).sum())
    lines.append(f"  - worst single cell: {cell_label(worst)}: {fmt_rate(wk, worst.runs)}")
    for share, base, limit in ((0.01, 0.01, 5.0), (0.01, 0.001, 30.0), (0.10, 0.001, 30.0)):
        for nuisance in NUISANCES:
            c = next(
                c
                for c in rate_cells
                if (c.canary_share, c.baseline_rate, c.multiplier, c.nuisance) == (share, base, 2.0, nuisance)
            )
            ticks = ours.rollback_tick[c.start : c.stop]
            med = float(np.quantile(np.sort(ticks), 0.5, method="higher")) * TICK_S / 60
            verdict = "met" if med < limit or (limit == 30.0 and med <= limit) else "NOT MET"
            lines.append(
                f"- {verdict}: 2x regression, {cell_label(c)}: median {fmt_minutes(med * 60 / TICK_S)} "
                f"min (required {'<' if limit == 5.0 else '<='} {limit:g} min)"
            )
    return lines


def render(
    rate_cells: list[Cell],
    rate_out: list[Outcome],
    lat_cells: list[Cell],
    lat_out: list[Outcome],
    seconds: float,
    quick: bool,
) -> str:
    cpu = os.cpu_count()
    lines = [
        BEGIN,
        "",
        "Reproduce: `make bench-gates` (or `.venv/bin/python -m bench.gates`), seed "
        f"{SEED}{', --quick' if quick else ''}. Wall time of this run: {seconds:.0f} s on "
        f"{cpu} cores ({platform.python_implementation()} {platform.python_version()}, "
        f"numpy {np.__version__}).",
        "",
        f"Traffic: {TOTAL_RPS:,.0f} req/s over both versions (1% canary = {TOTAL_RPS * 0.01:g} req/s, "
        f"10% = {TOTAL_RPS * 0.1:g} req/s), aggregated per {TICK_S} s tick, over a {HORIZON_S // 3600}-hour "
        f"analysis window per run. Runs per cell: {rate_cells[0].runs} with no regression, "
        f"{next(c.runs for c in rate_cells if c.regression)} with one. Times are minutes from the "
        f"start of the canary to the rollback; `>{HORIZON_S // 60}` means not within the window "
        "(more than half the runs, for a median). Errors: the canary's error requests served before "
        "the rollback (median).",
        "",
        "Nuisances: `diurnal` (load +-60% over 24 h from a random time of day, error rate following "
        "load), `bursts` (an incident about every 30 min, 1-5 min long, multiplying both versions' "
        "error rate 5-20x), `overdispersion` (each version's error rate per tick scaled by an "
        "independent Gamma(4, 1/4): coefficient of variation 0.5).",
        "",
        "### Acceptance (this project's gate)",
        "",
        *acceptance(rate_cells, rate_out),
        "",
        "### Summary per gate (nuisance `none` for the detection columns)",
        "",
        *summary_table(rate_cells, rate_out, lat_cells, lat_out),
        "",
        "### Gates",
        "",
        *[f"- **{o.name}**: {o.note}" for o in rate_out],
        "",
    ]
    for out in rate_out:
        lines += [f"### Error rate: {out.name}", "", *gate_table(rate_cells, out, errors=True), ""]
    lines += [
        "### Latency shift",
        "",
        f"Latency log-normal, median {LATENCY_MEDIAN_S * 1000:.0f} ms, sigma {LATENCY_SIGMA}; the canary's "
        "latencies are multiplied by the factor in the column. Histograms of 20 buckets, log-spaced "
        "10 ms to 10 s; quantiles of 1-minute histograms are interpolated as Prometheus' "
        "`histogram_quantile` does. `diurnal+bursts`: load slows both versions up to 12%, "
        "incidents slow both 1.5-2.1x.",
        "",
        *[f"- **{o.name}**: {o.note}" for o in lat_out],
        "",
    ]
    for out in lat_out:
        lines += [f"#### Latency: {out.name}", "", *gate_table(lat_cells, out, errors=False), ""]
    ours = rate_out[0]
    if ours.cleared_at is not None:
        clean = np.concatenate(
            [
                ours.cleared_at[c.start : c.stop]
                for c in rate_cells
                if not c.regression and c.nuisance == "none"
            ]
        )
        med, p90, share = detect_summary(clean)
        lines += [
            "### Passing a clean canary",
            "",
            f"This project's gate also concludes NO_REGRESSION (ratio below the 1.5x tolerance) on "
            f"clean runs: median {med} min, p90 {p90} min, {share:.0%} within the window "
            "(no-regression cells, nuisance `none`, all four traffic/base-rate cells pooled).",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_outputs(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Gate benchmark results\n\nGenerated by `python -m bench.gates`; "
        "see docs/statistics.md for what the gates are.\n\n" + text
    )
    if DOCS.exists():
        doc = DOCS.read_text()
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
        doc = pattern.sub(lambda _m: text, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + text
        DOCS.write_text(doc)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gates", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fifth of the runs (smoke test; writes no files)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table, write no files")
    parser.add_argument("--workers", type=int, default=2, help="processes to simulate in (default 2)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    t0 = time.perf_counter()
    rate_cells = build_cells("rate", args.quick)
    lat_cells = build_cells("latency", args.quick)
    print(
        f"rate: {len(rate_cells)} cells, {rate_cells[-1].stop} runs; latency: {len(lat_cells)} cells, "
        f"{lat_cells[-1].stop} runs; {TICKS} ticks each; {args.workers} worker processes",
        file=sys.stderr,
    )
    half = len(NUISANCES) // 2
    chunks = [
        [c for c in rate_cells if c.nuisance in NUISANCES[:half]],
        [c for c in rate_cells if c.nuisance in NUISANCES[half:]],
        lat_cells,
    ]
    parts = run_all(chunks, args.workers)
    rate_out = merge(parts[:2])
    lat_out = parts[2]
    text = render(rate_cells, rate_out, lat_cells, lat_out, time.perf_counter() - t0, args.quick)
    print(text)
    if not (args.no_write or args.quick):
        write_outputs(text)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
