"""Canary-versus-baseline gate benchmark at production cadence: this project's test, Flagger- and
Kayenta-style gates and the Neyman-Pearson fixed-horizon limit, on the same simulated data.

Run: ``python -m bench.gates`` (``make bench-gates``). Each run simulates one canary stage, evaluated
once a minute from Prometheus-style ``increase(x[1m])`` over counters scraped every 15 s (scrape
offsets, extrapolation, counter resets), with the 10 s cadence of exact counts as a second column for
the detection cells. Every gate sees the same streams. For the 2x cells from the start and after
48 clean hours, detectors that know the effect (CUSUM, SPRT) and the e-detector's mixture, with
thresholds set by simulation, show what a late regression costs any detector. Writes
``bench/results/gates.md`` and the generated section of ``docs/statistics.md``. Options: ``--runs N``
(no-regression runs per cell; regression cells get half), ``--cells a,b`` (cell ids), ``--no-write``,
``--seed``.

Needs scipy (the ``bench`` extra) for the Mann-Whitney judge, the normal CDF and binomial quantiles;
the product itself is numpy only.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats

from rollout_policies.core.sequential import (
    LatencyComparisonBatch,
    RateComparisonBatch,
    baseline_dispersion,
    exceedance_cut,
    histogram_dispersion,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SEED = 20261202
ALPHA = 0.01
SCRAPE_S = 15  # the plan's declared scrape interval
INTERVAL_S = 60  # one evaluation a minute
WINDOW_S = INTERVAL_S + SCRAPE_S  # increase(x[75s]): the window reaches the previous evaluation's last scrape
# The samples inside a 75 s window span exactly the 60 s since the previous window's last sample, so
# consecutive windows tile the counter (no gap, no overlap); increase() extrapolates them to 75 s.
OBSERVED = 1.0
COUNT_SCALE = WINDOW_S / INTERVAL_S
HISTORY_MIN = 360  # the baseline's minutes before the stage, for the dispersion prior (product: 24 h)
RUNS_NULL = 400
FLAGGER_LIMIT = 5  # Flagger's `threshold`: failed checks before rollback
FLAGGER_P99_S = 0.5
KAYENTA_EVERY_MIN = 10
KAYENTA_LOOKBACK_MIN = 60  # judged on the last hour of 1-minute points
KAYENTA_ALPHA = 0.01
LATENCY_EDGES = np.geomspace(0.010, 10.0, 20)
LATENCY_MEDIAN_S = 0.120
LATENCY_SIGMA = 0.5
DIURNAL_AMPLITUDE = 0.6
VIP_SHARE = 0.1  # of the baseline's requests (the candidate serves none in the medium stage)
# The known-effect references for late regressions: CUSUM thresholds calibrated so that false alarms
# within the plan's 14-day stage (the e-detector's horizon), or within the late cell's 49 hours
# only, are alpha; on clean runs of the 2x cells, this many of them.
ORACLE_CELLS = ("d1", "late48")
ORACLE_HORIZONS = (14 * 1440, 2880 + 60)
ORACLE_CALIBRATION_RUNS = 8000
MIXTURE_CALIBRATION_RUNS = 2000  # the mixture statistic tracks ~50 ratios per run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gates.md"
DOCS = ROOT / "docs" / "statistics.md"
BEGIN = "<!-- BEGIN GENERATED: python -m bench.gates -->"
END = "<!-- END GENERATED -->"


@dataclass(frozen=True)
class Cell:
    """One scenario: its runs are simulated together, every gate on the same streams."""

    id: str
    label: str
    kind: str = "rate"  # "rate" or "latency"
    share: float = 0.01
    base: float = 0.01
    mult: float = 1.0  # error-rate multiplier, or latency change ("tail" / scale)
    rps: float = 1000.0
    minutes: int = 120
    change_at: int = 0  # minute the regression starts
    jitter_cv: float = 0.0  # independent per-version, per-minute rate jitter
    diurnal: bool = False
    incidents: bool = False
    ramp: bool = False  # 2% -> 5% -> 10% in thirds of the run
    missing: float = 0.0  # share of minutes with no data
    resets: float = 0.0  # per-minute probability that a version's counters restart
    vip: bool = False  # the candidate excludes VIPs (half the error rate)
    tail: bool = False  # latency: the slowest 1% take twice as long
    cadence_s: int = 60  # 60: production (increase() per minute); 10: exact counts every 10 s
    limit: bool = False  # compute the Neyman-Pearson limit

    @property
    def regression(self) -> bool:
        return self.mult != 1.0 or self.tail


def cells() -> list[Cell]:
    d = [
        Cell("d1", "2x, 1% share, 1% base", mult=2.0, limit=True),
        Cell("d2", "2x, 5% share, 5% base", share=0.05, base=0.05, mult=2.0, limit=True),
        Cell("d3", "1.5x, 10% share, 5% base", share=0.10, base=0.05, mult=1.5, limit=True),
        Cell("d4", "2x, 1% share, 0.1% base", base=0.001, mult=2.0, limit=True),
    ]
    ten = [Cell(c.id + "-10s", c.label, share=c.share, base=c.base, mult=c.mult, cadence_s=10) for c in d]
    late = [
        Cell("late48", "2x from 48 h on, 1% share, 1% base", mult=2.0, minutes=2880 + 60, change_at=2880),
    ]
    null = [
        Cell("n-clean", "no regression, 1% share, 1% base"),
        Cell("n-clean5", "no regression, 5% share, 5% base", share=0.05, base=0.05),
        Cell("n-clean01", "no regression, 1% share, 0.1% base", base=0.001),
        Cell("n-jit05", "jitter CV 0.5 per version, 1% share, 1% base", jitter_cv=0.5),
        Cell("n-jit10", "jitter CV 1.0 per version, 1% share, 1% base", jitter_cv=1.0),
        Cell(
            "n-jit10-5", "jitter CV 1.0 per version, 5% share, 5% base", share=0.05, base=0.05, jitter_cv=1.0
        ),
        Cell("n-ramp", "ramp 2% -> 5% -> 10%, 1% base", ramp=True, minutes=180),
        Cell("n-diurnal", "diurnal load +-60%, 24 h", diurnal=True, minutes=1440),
        Cell("n-incidents", "shared incidents (5-20x errors, 1-5 min)", incidents=True, minutes=360),
        Cell("n-1rps", "1 rps, 10% share, 1% base, 24 h", rps=1.0, share=0.10, minutes=1440),
        Cell("n-missing", "10% of minutes missing", missing=0.10),
        Cell("n-resets", "counter resets (each version ~ every 30 min)", resets=1 / 30),
        Cell("n-7d", "7 days at 1 rps, 10% share, 1% base", rps=1.0, share=0.10, minutes=7 * 1440),
        Cell("n-14d", "14-day stage at 1 rps, 10% share, 1% base", rps=1.0, share=0.10, minutes=14 * 1440),
        Cell(
            "n-vip",
            "VIPs excluded from the candidate (half the error rate), 30% share, 24 h",
            share=0.30,
            vip=True,
            minutes=1440,
        ),
    ]
    lat = [
        Cell("l-tail", "latency: slowest 1% twice as long, 5% share", kind="latency", share=0.05, tail=True),
        Cell("l-shift", "latency: every request 1.25x, 5% share", kind="latency", share=0.05, mult=1.25),
        Cell("l-null", "latency: no regression, 5% share", kind="latency", share=0.05),
        Cell(
            "l-null-inc",
            "latency: no regression, shared incidents",
            kind="latency",
            share=0.05,
            incidents=True,
            minutes=180,
        ),
    ]
    return d + ten + late + null + lat


# ------------------------------------------------------------------------------------------ traffic


@dataclass
class Streams:
    """Per-stream nuisance state of one cell's runs."""

    cell: Cell
    n: int
    rng: np.random.Generator
    phase: FloatArray = field(init=False)
    burst_left: npt.NDArray[np.int64] = field(init=False)
    burst_factor: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.phase = self.rng.uniform(0, 2 * np.pi, self.n)
        self.burst_left = np.zeros(self.n, dtype=np.int64)
        self.burst_factor = np.ones(self.n)

    def load(self, minute: float) -> FloatArray:
        if not self.cell.diurnal:
            return np.ones(self.n)
        out: FloatArray = 1 + DIURNAL_AMPLITUDE * np.sin(2 * np.pi * minute / 1440 + self.phase)
        return out

    def incident(self) -> FloatArray:
        """A shared incident about every 30 minutes, 1-5 minutes long, errors 5-20x on both versions."""
        if not self.cell.incidents:
            return np.ones(self.n)
        start = (self.burst_left == 0) & (self.rng.random(self.n) < 1 / 30)
        self.burst_left = np.where(start, self.rng.integers(1, 6, self.n), self.burst_left)
        self.burst_factor = np.where(start, self.rng.uniform(5, 20, self.n), self.burst_factor)
        out = np.where(self.burst_left > 0, self.burst_factor, 1.0)
        self.burst_left = np.maximum(self.burst_left - 1, 0)
        return out

    def share(self, minute: float) -> float:
        c = self.cell
        if not c.ramp:
            return c.share
        third = c.minutes / 3
        return 0.02 if minute < third else (0.05 if minute < 2 * third else 0.10)

    def jitter(self) -> FloatArray:
        cv = self.cell.jitter_cv
        if cv <= 0:
            return np.ones(self.n)
        k = 1 / cv**2
        out: FloatArray = self.rng.gamma(k, 1 / k, self.n)
        return out


def observed_fraction(rng: np.random.Generator, n: int, resets: float) -> FloatArray:
    """The share of a minute's counts that increase() sees: all of it, less what a restart loses."""
    frac = np.full(n, OBSERVED)
    if resets > 0:
        hit = rng.random(n) < resets
        # Counts between the last scrape before the restart and the restart itself are lost.
        frac = np.where(hit, frac - rng.uniform(0, SCRAPE_S / WINDOW_S, n), frac)
    return frac


def rate_minute(s: Streams, minute: int, *, baseline_only: bool = False) -> dict[str, FloatArray]:
    """One evaluation's counts per version (as increase() returns them, or exact at 10 s cadence)."""
    c, rng, n = s.cell, s.rng, s.n
    secs = c.cadence_s
    share = 0.0 if baseline_only else s.share(minute)
    req = c.rps * secs * s.load(minute)
    shared = s.incident() * (s.load(minute) if c.diurnal else 1.0)
    mult = c.mult if (minute >= c.change_at and not baseline_only) else 1.0
    exact = secs != 60
    fc = np.ones(n) if exact else observed_fraction(rng, n, c.resets)
    fb = np.ones(n) if exact else observed_fraction(rng, n, c.resets)
    pc = np.minimum(c.base * mult * shared * s.jitter(), 1.0)
    pb = np.minimum(c.base * shared * s.jitter(), 1.0)
    nc = rng.poisson(req * share * fc)
    xc = rng.binomial(nc, pc)
    if c.vip:
        # The baseline also serves VIPs, at half the error rate; the candidate serves none.
        nb = rng.poisson(req * (1 - share) * (1 - VIP_SHARE) * fb)
        nv = rng.poisson(req * (1 - share) * VIP_SHARE * fb)
        xb = rng.binomial(nb, pb)
        xv = rng.binomial(nv, pb * 0.5)
    else:
        nb = rng.poisson(req * (1 - share) * fb)
        xb = rng.binomial(nb, pb)
        nv = xv = np.zeros(n, dtype=np.int64)
    scale = 1.0 if exact else COUNT_SCALE
    out = {
        "xc": xc * scale,
        "nc": nc * scale,
        "xb": xb * scale,
        "nb": nb * scale,
        "xv": xv * scale,
        "nv": nv * scale,
    }
    if c.missing > 0:
        gone = rng.random(n) < c.missing
        for key in out:
            out[key] = np.where(gone, 0.0, out[key])
    return {k: v.astype(np.float64) for k, v in out.items()}


def bucket_probs(scale: FloatArray, tail: BoolArray) -> FloatArray:
    """Bucket probabilities of the log-normal latency, scaled; ``tail``: the slowest 1% doubled."""
    edges = LATENCY_EDGES[None, :]
    z = (np.log(edges / LATENCY_MEDIAN_S) - np.log(scale)[:, None]) / LATENCY_SIGMA
    cdf = stats.norm.cdf(z)
    q99 = LATENCY_MEDIAN_S * scale * math.exp(LATENCY_SIGMA * stats.norm.ppf(0.99))
    # With the slowest 1% doubled, nothing lands in (q99, 2 q99]; beyond, the CDF is F(x / 2).
    zt = (np.log(edges / 2 / LATENCY_MEDIAN_S) - np.log(scale)[:, None]) / LATENCY_SIGMA
    cdf_tail = np.where(
        edges <= q99[:, None], cdf, np.where(edges <= 2 * q99[:, None], 0.99, stats.norm.cdf(zt))
    )
    cdf = np.where(tail[:, None], cdf_tail, cdf)
    full = np.concatenate([np.zeros((scale.size, 1)), cdf, np.ones((scale.size, 1))], axis=1)
    probs: FloatArray = np.clip(np.diff(full, axis=1), 0, None)
    return probs / probs.sum(axis=1, keepdims=True)


def latency_minute(s: Streams, minute: int, *, baseline_only: bool = False) -> dict[str, FloatArray]:
    c, rng, n = s.cell, s.rng, s.n
    share = 0.0 if baseline_only else s.share(minute)
    req = c.rps * 60 * s.load(minute)
    slow = np.sqrt(np.sqrt(s.incident()))  # incidents slow both versions 1.5-2.1x
    on = (minute >= c.change_at) and not baseline_only
    mult = np.full(n, c.mult if on else 1.0)
    tail = np.full(n, c.tail and on)
    fc = observed_fraction(rng, n, c.resets)
    fb = observed_fraction(rng, n, c.resets)
    hc = rng.multinomial(rng.poisson(req * share * fc), bucket_probs(slow * mult, tail)) * COUNT_SCALE
    hb = rng.multinomial(rng.poisson(req * (1 - share) * fb), bucket_probs(slow, np.zeros(n, bool)))
    return {"hc": hc.astype(np.float64), "hb": (hb * COUNT_SCALE).astype(np.float64)}


# -------------------------------------------------------------------------------------------- gates


class Gate:
    """Rollback decisions over all runs of a cell; ``step`` returns which runs roll back now."""

    name = ""

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        raise NotImplementedError


class Sequential(Gate):
    def __init__(
        self,
        name: str,
        n: int,
        *,
        history: FloatArray | None,
        rate: FloatArray | None = None,
        vip_filtered: bool = True,
        **kw: float,
    ):
        self.name = name
        self.vip_filtered = vip_filtered
        self.cmp = RateComparisonBatch(
            n,
            alpha=ALPHA,
            dispersion_prior=history,
            baseline_rate=rate,
            **kw,  # type: ignore[arg-type]
        )

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        xb, nb = obs["xb"], obs["nb"]
        if not self.vip_filtered:
            xb, nb = xb + obs["xv"], nb + obs["nv"]
        out: BoolArray = self.cmp.observe(obs["xc"], obs["nc"], xb, nb) == 1
        return out


ORACLE = "oracle"  # gate names from here are the known-effect references of the late-regression table


def oracle_llr(cell: Cell, obs: dict[str, FloatArray]) -> FloatArray:
    """Per run, one interval's log-likelihood ratio of the canary's errors given the total, for the
    cell's own effect against none: what a detector that knows the effect adds up. The counts are
    divided by increase()'s extrapolation, so they are the scraped counts again."""
    scale = 1.0 if cell.cadence_s != 60 else COUNT_SCALE
    xc, nc, xb, nb = (obs[k] / scale for k in ("xc", "nc", "xb", "nb"))
    ok = (nc > 0) & (nb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi0 = np.where(ok, nc / (nc + nb), 0.5)
        pi1 = np.where(ok, cell.mult * nc / (cell.mult * nc + nb), 0.5)
        out: FloatArray = np.where(ok, xc * np.log(pi1 / pi0) + xb * np.log((1 - pi1) / (1 - pi0)), 0.0)
    return out


class OracleCusum(Gate):
    """Page's CUSUM with the effect known: max(0, W + LLR), alarm at ``threshold`` (nats). The
    optimal detector for a known change (Lorden 1971, Moustakides 1986) at a given false-alarm rate."""

    def __init__(self, name: str, cell: Cell, n: int, threshold: float) -> None:
        self.name, self.cell, self.threshold = name, cell, threshold
        self.w = np.zeros(n)

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.w = np.maximum(0.0, self.w + oracle_llr(self.cell, obs))
        out: BoolArray = self.w >= self.threshold
        return out


class OracleSprt(Gate):
    """Wald's SPRT from the stage start with the effect known, at log(1/alpha): by Ville's inequality
    a level-alpha test of "no regression from the start", the fastest such test on average (Wald and
    Wolfowitz 1948). It watches for a change at the start only."""

    def __init__(self, name: str, cell: Cell, n: int) -> None:
        self.name, self.cell = name, cell
        self.llr = np.zeros(n)

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.llr += oracle_llr(self.cell, obs)
        out: BoolArray = self.llr >= math.log(1 / ALPHA)
        return out


class MixtureShiryaevRoberts(Gate):
    """The e-detector's statistic without its bound: per ratio on this project's grid above 1, the
    unit-weight Shiryaev-Roberts sum R = LR (R + 1) of the binomial likelihood ratios, mixed with the
    project's half-normal weights; alarm at ``threshold`` (log). The effect is not known; only the
    threshold is set by simulation instead of Ville's inequality."""

    def __init__(self, name: str, cell: Cell, n: int, threshold: float) -> None:
        self.name, self.cell, self.threshold = name, cell, threshold
        grid = RateComparisonBatch(1)
        self.log_ratios = grid.log_ratios[grid._reg_idx]
        self.log_w = grid._reg_logw
        self.log_r = np.full((n, self.log_ratios.size), -np.inf)

    def statistic(self, obs: dict[str, FloatArray]) -> FloatArray:
        scale = 1.0 if self.cell.cadence_s != 60 else COUNT_SCALE
        xc, nc, xb, nb = (obs[k][: self.log_r.shape[0]] / scale for k in ("xc", "nc", "xb", "nb"))
        ok = (nc > 0) & (nb > 0)
        rho = np.exp(self.log_ratios)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(ok, nc / np.where(nb > 0, nb, 1.0), 0.0)[:, None]
            # x_c log(pi1/pi0) + x_b log((1-pi1)/(1-pi0)) with pi = rho s / (1 + rho s)
            llr = xc[:, None] * np.log(rho) - (xc + xb)[:, None] * (np.log1p(rho * share) - np.log1p(share))
        llr = np.where(ok[:, None], llr, 0.0)
        self.log_r = llr + np.logaddexp(self.log_r, 0.0)
        out: FloatArray = _mix(self.log_r + self.log_w[None, :])
        return out

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        out: BoolArray = self.statistic(obs) >= self.threshold
        return out


def _mix(a: FloatArray) -> FloatArray:
    peak = a.max(axis=1, keepdims=True)
    out: FloatArray = np.log(np.exp(a - peak).sum(axis=1)) + peak[:, 0]
    return out


def calibrate_oracles(
    runs: int, mixture_runs: int, horizons: tuple[int, ...], seed: np.random.SeedSequence
) -> dict[str, dict[int, float]]:
    """Per detector and horizon (minutes), the threshold whose false alarms within the horizon are
    alpha: the (1 - alpha) quantile of the detector's maximum over that horizon on clean streams of
    the 2x cells (1% share, 1% base, production cadence). The CUSUM looks for 2x; the mixture
    Shiryaev-Roberts statistic (slower: on the first ``mixture_runs`` streams) for any ratio."""
    cell = Cell("calibration", "clean", mult=1.0, minutes=max(horizons))
    looks_for = Cell("calibration", "2x", mult=2.0)
    s = Streams(cell, runs, np.random.default_rng(seed))
    w = np.zeros(runs)
    peak = np.zeros(runs)
    mixture = MixtureShiryaevRoberts("", cell, mixture_runs, math.inf)
    mixture_peak = np.full(mixture_runs, -np.inf)
    out: dict[str, dict[int, float]] = {"cusum": {}, "mixture": {}}
    for minute in range(cell.minutes):
        obs = rate_minute(s, minute)
        w = np.maximum(0.0, w + oracle_llr(looks_for, obs))
        peak = np.maximum(peak, w)
        mixture_peak = np.maximum(mixture_peak, mixture.statistic(obs))
        if minute + 1 in horizons:
            out["cusum"][minute + 1] = float(np.quantile(peak, 1 - ALPHA))
            out["mixture"][minute + 1] = float(np.quantile(mixture_peak, 1 - ALPHA))
    return out


class FlaggerRate(Gate):
    def __init__(self, name: str, n: int, threshold: float) -> None:
        self.name = name
        self.threshold = threshold
        self.failed = np.zeros(n, dtype=np.int64)
        self.acc = np.zeros((2, n))
        self.ticks = 0

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.acc += np.stack([obs["xc"], obs["nc"]])
        self.ticks += 1
        if self.ticks * self.cadence >= 60:
            xc, nc = self.acc
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(nc > 0, xc / nc, np.nan)  # no data: Flagger skips the check
            self.failed += (rate > self.threshold).astype(np.int64)
            self.acc[:] = 0
            self.ticks = 0
        out: BoolArray = self.failed >= FLAGGER_LIMIT
        return out

    cadence = 60


class Kayenta(Gate):
    """Mann-Whitney U on the last hour of 1-minute points (canary vs baseline), every 10 minutes."""

    name = "Kayenta-style Mann-Whitney"

    def __init__(self, n: int, minutes: int, metric: str) -> None:
        self.canary = np.full((n, minutes), np.nan)
        self.baseline = np.full((n, minutes), np.nan)
        self.metric = metric
        self.failed = np.zeros(n, dtype=bool)

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        if self.metric == "rate":
            with np.errstate(invalid="ignore", divide="ignore"):
                self.canary[:, minute] = np.where(obs["nc"] > 0, obs["xc"] / obs["nc"], np.nan)
                self.baseline[:, minute] = np.where(obs["nb"] > 0, obs["xb"] / obs["nb"], np.nan)
        else:
            self.canary[:, minute] = hist_quantile(obs["hc"], 0.95)
            self.baseline[:, minute] = hist_quantile(obs["hb"], 0.95)
        if (minute + 1) % KAYENTA_EVERY_MIN == 0:
            lo = max(0, minute + 1 - KAYENTA_LOOKBACK_MIN)
            c = self.canary[:, lo : minute + 1]
            b = self.baseline[:, lo : minute + 1]
            # An interval without data reads as 0 here (vectorised; Kayenta itself drops it).
            p = stats.mannwhitneyu(
                np.nan_to_num(c, nan=0.0),
                np.nan_to_num(b, nan=0.0),
                axis=1,
                alternative="greater",
                method="asymptotic",
            ).pvalue
            self.failed |= np.nan_to_num(np.asarray(p, dtype=float), nan=1.0) < KAYENTA_ALPHA
        return self.failed


def hist_quantile(hist: FloatArray, q: float) -> FloatArray:
    """histogram_quantile as Prometheus computes it (linear inside the bucket; NaN without data)."""
    total = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    rank = q * total
    idx = np.argmax(cum >= rank[:, None], axis=1)
    rows = np.arange(hist.shape[0])
    upper = np.concatenate([LATENCY_EDGES, [LATENCY_EDGES[-1]]])
    lower = np.concatenate([[0.0], LATENCY_EDGES])
    below = np.where(idx > 0, cum[rows, np.maximum(idx - 1, 0)], 0.0)
    inside = hist[rows, idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(inside > 0, (rank - below) / inside, 1.0)
    value = np.where(
        idx == LATENCY_EDGES.size, LATENCY_EDGES[-1], lower[idx] + (upper[idx] - lower[idx]) * frac
    )
    out: FloatArray = np.where(total > 0, value, np.nan)
    return out


class SequentialLatency(Gate):
    def __init__(self, name: str, n: int, history: FloatArray | None, **kw: float) -> None:
        self.name = name
        self.cmp = LatencyComparisonBatch(
            n, LATENCY_EDGES, alpha=ALPHA, dispersion_prior=history, count_scale=COUNT_SCALE, **kw
        )  # type: ignore[arg-type]

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        out: BoolArray = self.cmp.observe(obs["hc"], obs["hb"]) == 1
        return out


class SingleEdgeLatency(Gate):
    """The previous design: one cut at the baseline's running p95 edge, through the rate test."""

    name = "previous design: one edge at the baseline's p95"

    def __init__(self, n: int) -> None:
        self.cmp = RateComparisonBatch(n, alpha=ALPHA, change_share=0.0, count_scale=COUNT_SCALE)
        self.hb = np.zeros((n, LATENCY_EDGES.size + 1))

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        cut = exceedance_cut(self.hb, 0.95)
        slow = np.arange(self.hb.shape[1])[None, :] >= cut[:, None]
        ready = cut >= 0
        hc, hb = obs["hc"], obs["hb"]
        z = np.zeros(hc.shape[0])
        codes = self.cmp.observe(
            np.where(ready, (hc * slow).sum(1), z),
            np.where(ready, hc.sum(1), z),
            np.where(ready, (hb * slow).sum(1), z),
            np.where(ready, hb.sum(1), z),
        )
        self.hb += hb
        out: BoolArray = codes == 1
        return out


class FlaggerLatency(Gate):
    name = "Flagger-style, p99 > 500 ms"

    def __init__(self, n: int) -> None:
        self.failed = np.zeros(n, dtype=np.int64)

    def step(self, minute: int, obs: dict[str, FloatArray]) -> BoolArray:
        self.failed += (np.nan_to_num(hist_quantile(obs["hc"], 0.99), nan=0.0) > FLAGGER_P99_S).astype(
            np.int64
        )
        out: BoolArray = self.failed >= FLAGGER_LIMIT
        return out


# ----------------------------------------------------------------------------------------- simulate


@dataclass
class Result:
    cell: Cell
    runs: int
    seconds: float
    rolled_back: dict[str, FloatArray]  # gate name -> minute of rollback from the change (inf: never)
    early: dict[str, int]  # rollbacks before the change (late-regression cells)


def simulate(
    cell: Cell, runs: int, seed: np.random.SeedSequence, oracle: dict[str, dict[int, float]] | None = None
) -> Result:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = Streams(cell, runs, rng)
    draw = rate_minute if cell.kind == "rate" else latency_minute
    # The baseline's history before the stage: its own jitter sets the dispersion prior.
    hist = [draw(s, m - HISTORY_MIN, baseline_only=True) for m in range(HISTORY_MIN)]
    if cell.kind == "rate":
        prior, _ = baseline_dispersion(
            np.array([h["xb"] for h in hist]),
            np.array([h["nb"] for h in hist]),
            count_scale=1.0 if cell.cadence_s != 60 else COUNT_SCALE,
        )
        scale = 1.0 if cell.cadence_s != 60 else COUNT_SCALE
        with np.errstate(invalid="ignore", divide="ignore"):
            base_rate = sum(h["xb"] for h in hist) / sum(h["nb"] for h in hist)
        gates: list[Gate] = [
            Sequential(
                "this project (baseline-history dispersion + e-detector)",
                runs,
                history=prior,
                rate=base_rate,
                count_scale=scale,
            ),
            Sequential(
                "in-stage dispersion estimate (previous design)",
                runs,
                history=None,
                change_share=0.0,
                count_scale=scale,
            ),
            Sequential(
                "dispersion fixed at 1 (ablation)", runs, history=None, dispersion=1.0, count_scale=scale
            ),
            FlaggerRate("Flagger-style, > 1% (plan alert)", runs, 0.01),
            FlaggerRate("Flagger-style, > 2x baseline rate", runs, 2 * cell.base),
        ]
        if cell.vip:
            gates.insert(
                1,
                Sequential(
                    "this project without the segment filter",
                    runs,
                    history=prior,
                    rate=base_rate,
                    vip_filtered=False,
                    count_scale=scale,
                ),
            )
        if cell.minutes > 1440:  # days-long cells: the threshold gates are settled within the first day
            gates = gates[:1]  # this project's only: a minute costs a few ms per gate
        if oracle and cell.id in ORACLE_CELLS:
            gates += [
                OracleCusum(oracle_name(h), cell, runs, t)
                for h, t in sorted(oracle["cusum"].items(), reverse=True)
            ]
            span = max(oracle["mixture"])
            gates.append(MixtureShiryaevRoberts(MIXTURE_NAME, cell, runs, oracle["mixture"][span]))
            if cell.change_at == 0:
                gates.append(OracleSprt(f"{ORACLE} SPRT from the stage start", cell, runs))
        for g in gates:
            if isinstance(g, FlaggerRate):
                g.cadence = cell.cadence_s
        steps = cell.minutes * 60 // cell.cadence_s
        if cell.cadence_s == 60 and cell.minutes <= 1440:
            gates.append(Kayenta(runs, cell.minutes, "rate"))
    else:
        prior = histogram_dispersion(np.array([h["hb"] for h in hist]), count_scale=COUNT_SCALE)
        gates = [
            SequentialLatency("this project (every bucket edge)", runs, prior),
            SingleEdgeLatency(runs),
            FlaggerLatency(runs),
            Kayenta(runs, cell.minutes, "latency"),
        ]
        steps = cell.minutes
    per_minute = 60 // cell.cadence_s
    at = {g.name: np.full(runs, np.inf) for g in gates}
    for step in range(steps):
        minute = step // per_minute
        obs = draw(s, minute) if cell.cadence_s == 60 else draw(s, step / per_minute)  # type: ignore[arg-type]
        for g in gates:
            fired = g.step(minute, obs) & np.isinf(at[g.name])
            at[g.name][fired] = (step + 1) / per_minute
    early = {name: int((t <= cell.change_at).sum()) for name, t in at.items()}
    after = {
        name: np.where(t > cell.change_at, t - cell.change_at, np.where(np.isfinite(t), -1.0, t))
        for name, t in at.items()
    }
    return Result(cell, runs, time.perf_counter() - t0, after, early)


MIXTURE_NAME = f"{ORACLE}-free: the e-detector's mixture, threshold by simulation (alpha within 14 days)"


def oracle_name(horizon: int) -> str:
    days = horizon / 1440
    span = f"{days:g} days" if days == int(days) else f"{horizon / 60:g} h"
    return f"{ORACLE} CUSUM, false alarms alpha within {span}"


def np_limit(cell: Cell) -> float:
    """Minutes at which the most powerful fixed-horizon level-alpha test, knowing the effect, has 50%
    power: canary errors given the total errors, Binomial(m, pi0) against Binomial(m, pi1), m expected."""
    pi0 = cell.share
    pi1 = cell.share * cell.mult / (cell.share * cell.mult + 1 - cell.share)
    per_min = cell.rps * 60 * cell.base * (cell.share * cell.mult + 1 - cell.share)
    for minutes in range(1, 600):
        m = round(per_min * minutes)
        if m < 1:
            continue
        k = stats.binom.ppf(1 - ALPHA, m, pi0)
        if stats.binom.sf(k, m, pi1) >= 0.5:
            return minutes
    return math.inf


# ------------------------------------------------------------------------------------------- report


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fmt_min(x: float) -> str:
    if not np.isfinite(x):
        return "never"
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def summary(r: Result, name: str) -> str:
    if name not in r.rolled_back:  # days-long cells run this project's gate only
        return "-"
    t = r.rolled_back[name]
    if not r.cell.regression:
        k = int(np.isfinite(t).sum())
        lo, hi = wilson(k, r.runs)
        return f"{100 * k / r.runs:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    valid = t[t >= 0]
    med = float(np.quantile(np.sort(valid), 0.5, method="higher")) if valid.size else math.inf
    p90 = float(np.quantile(np.sort(valid), 0.9, method="higher")) if valid.size else math.inf
    text = f"{fmt_min(med)} [{fmt_min(p90)}]"
    if r.early.get(name):
        text += f" ({r.early[name]} early)"
    return text


def median_of(r: Result, name: str) -> float:
    t = r.rolled_back[name]
    valid = t[t >= 0]
    return float(np.quantile(np.sort(valid), 0.5, method="higher")) if valid.size else math.inf


def false_rate(r: Result, name: str) -> tuple[float, float]:
    k = int(np.isfinite(r.rolled_back[name]).sum())
    return k / r.runs, wilson(k, r.runs)[1]


def render(
    results: list[Result],
    limits: dict[str, float],
    seconds: float,
    argv: list[str],
    oracle: dict[str, dict[int, float]] | None = None,
    calibration_runs: tuple[int, int] = (0, 0),
) -> str:
    ours = "this project (baseline-history dispersion + e-detector)"
    by_id = {r.cell.id: r for r in results}
    shown_args = (" " + " ".join(argv)) if argv else ""
    lines = [
        BEGIN,
        "",
        f"Reproduce: `make bench-gates` (`.venv/bin/python -m bench.gates{shown_args}`), "
        f"seed {SEED}. Wall time of this run: {seconds:.0f} s on {os.cpu_count()} shared cores "
        f"({platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}).",
        "",
        f"Production cadence: one evaluation a minute of `increase(x[{WINDOW_S}s])` over counters scraped "
        f"every {SCRAPE_S} s at a random offset (the window's samples span the minute since the previous "
        f"window's last scrape, and increase() extrapolates them by {COUNT_SCALE:.3g}); a counter reset "
        "loses the counts between the last scrape and the restart. The fixed-horizon limit is in whole "
        "evaluations. 1,000 rps over "
        f"both versions unless the cell says otherwise; alpha {ALPHA}. The dispersion prior comes from "
        f"{HISTORY_MIN} minutes of the baseline before the stage. Times are minutes from the start of "
        "the regression to the rollback, median [p90]; false rollbacks are the share of runs rolled "
        "back, [Wilson 95% interval].",
        "",
    ]
    det = [r for r in results if r.cell.regression and r.cell.kind == "rate" and r.cell.cadence_s == 60]
    if det:
        names = [n for n in det[0].rolled_back if not n.startswith(ORACLE)]
        lines += [
            "### Detection (rate)",
            "",
            "| cell | runs | fixed-horizon limit (NP, effect known) | "
            + " | ".join(names)
            + " | this project at 10 s cadence |",
            "|" + " --- |" * (len(names) + 4),
        ]
        for r in det:
            ten = by_id.get(r.cell.id + "-10s")
            ten_text = summary(ten, ours) if ten else "-"
            lim = limits.get(r.cell.id)
            lines.append(
                f"| {r.cell.label} | {r.runs} | {fmt_min(lim) if lim else '-'} | "
                + " | ".join(summary(r, n) for n in names)
                + f" | {ten_text} |"
            )
        lines.append("")
    null = [r for r in results if not r.cell.regression and r.cell.kind == "rate"]
    if null:
        names = sorted(
            {n for r in null for n in r.rolled_back},
            key=lambda n: list(null[0].rolled_back).index(n) if n in null[0].rolled_back else 99,
        )
        lines += [
            "### False rollbacks with no regression (rate)",
            "",
            "| cell | runs | " + " | ".join(names) + " |",
            "|" + " --- |" * (len(names) + 2),
        ]
        for r in null:
            lines.append(
                f"| {r.cell.label} | {r.runs} | "
                + " | ".join(summary(r, n) if n in r.rolled_back else "-" for n in names)
                + " |"
            )
        lines.append("")
    lat = [r for r in results if r.cell.kind == "latency"]
    if lat:
        names = list(lat[0].rolled_back)
        lines += [
            "### Latency (histograms of 20 buckets, 10 ms to 10 s)",
            "",
            "| cell | runs | " + " | ".join(names) + " |",
            "|" + " --- |" * (len(names) + 2),
        ]
        for r in lat:
            lines.append(f"| {r.cell.label} | {r.runs} | " + " | ".join(summary(r, n) for n in names) + " |")
        lines.append("")
    lines += oracle_section(by_id, oracle or {}, ours, calibration_runs)
    lines += ["### Acceptance (this project's gate, production cadence)", ""]

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else 'NOT MET'}: {text}")

    for cid in ("d1", "d2", "d3", "d4"):
        r = by_id.get(cid)
        if r is None:
            continue
        med, lim = median_of(r, ours), limits[cid]
        need = 2 * lim if cid in ("d1", "d2", "d4") else math.inf
        if cid in ("d1", "d2", "d3"):
            need = min(need, 5.0)
        check(
            med <= need,
            f"{r.cell.label}: median {fmt_min(med)} min, limit {fmt_min(lim)}, required <= {fmt_min(need)}",
        )
    for r in null:
        if ours in r.rolled_back:
            p, hi = false_rate(r, ours)
            check(
                p <= ALPHA and hi <= 2 * ALPHA and r.runs >= 400,
                f"{r.cell.label}: false rollbacks {100 * p:.2f}% (upper {100 * hi:.1f}%), {r.runs} runs",
            )
    for cid, label in (("l-tail", "tail-only latency regression"),):
        r = by_id.get(cid)
        if r is not None:
            med = median_of(r, "this project (every bucket edge)")
            check(med < 10, f"{label}: median {fmt_min(med)} min (required < 10)")
    for cid in ("l-null", "l-null-inc"):
        r = by_id.get(cid)
        if r is not None:
            p, hi = false_rate(r, "this project (every bucket edge)")
            check(
                p <= ALPHA and hi <= 2 * ALPHA,
                f"{r.cell.label}: false rollbacks {100 * p:.2f}% (upper {100 * hi:.1f}%)",
            )
    late, first = by_id.get("late48"), by_id.get("d1")
    if late is not None and first is not None:
        a, b = median_of(late, ours), median_of(first, ours)
        check(
            a <= 2 * b,
            f"2x after 48 clean hours: median {fmt_min(a)} min vs {fmt_min(b)} from the start "
            f"(required <= {fmt_min(2 * b)}); {late.early[ours]} of {late.runs} rolled back before "
            "the change",
        )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def oracle_section(
    by_id: dict[str, Result],
    oracle: dict[str, dict[int, float]],
    ours: str,
    calibration_runs: tuple[int, int],
) -> list[str]:
    """The late-regression table: this project's gate against detectors that know the effect."""
    late, first = by_id.get("late48"), by_id.get("d1")
    if late is None or first is None or not oracle:
        return []
    required = 2 * median_of(first, ours)
    lines = [
        "### Late regressions against detectors that know the effect (2x, 1% share, 1% base)",
        "",
        "Thresholds set by simulation: the (1 - alpha) quantile of the detector's maximum over the "
        f"span on clean runs ({calibration_runs[0]:,} for the CUSUMs, {calibration_runs[1]:,} for the "
        "mixture): false alarms within the span are alpha, held exactly and with all of alpha, where "
        "this project splits alpha and holds it by a bound that needs no simulation. The 2x "
        f"target for a regression after 48 clean hours is {fmt_min(required)} minutes: twice this "
        "project's median from the start.",
        "",
        "| detector | threshold (nats) | from the start: median [p90] | after 48 clean hours: median [p90] "
        "| late / this project from the start |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = [
        (
            ours,
            f"{math.log(1 / (0.5 * ALPHA)):.1f} from the start, {math.log(14 * 1440 / (0.5 * ALPHA)):.1f} "
            "restarted (Shiryaev-Roberts)",
        ),
        *((oracle_name(h), f"{t:.1f}") for h, t in sorted(oracle["cusum"].items(), reverse=True)),
        (MIXTURE_NAME, f"{oracle['mixture'][max(oracle['mixture'])]:.1f} (bound: 14.5)"),
        (f"{ORACLE} SPRT from the stage start", f"{math.log(1 / ALPHA):.1f} (watches the start only)"),
    ]
    for name, threshold in rows:
        late_text = summary(late, name) if name in late.rolled_back else "-"
        ratio = median_of(late, name) / median_of(first, ours) if name in late.rolled_back else math.nan
        lines.append(
            f"| {name} | {threshold} | {summary(first, name)} | {late_text} | "
            + (f"{ratio:.1f}" if np.isfinite(ratio) else "-")
            + " |"
        )
    lines.append("")
    return lines


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
    args_list = list(argv) if argv is not None else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="python -m bench.gates", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=RUNS_NULL, help="no-regression runs per cell (default 400)"
    )
    parser.add_argument("--cells", default="", help="comma-separated cell ids (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the tables, write no files")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(args_list)
    wanted = {c for c in args.cells.split(",") if c}
    chosen = [c for c in cells() if not wanted or c.id in wanted]
    unknown = wanted - {c.id for c in cells()}
    if unknown:
        print(
            f"bench.gates: unknown cells {sorted(unknown)} (known: {[c.id for c in cells()]})",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    # One more child than cells for the calibration: the cells' own seeds stay as they were.
    seeds = np.random.SeedSequence(args.seed).spawn(len(chosen) + 1)
    oracle: dict[str, dict[int, float]] = {}
    cal_runs = max(ORACLE_CALIBRATION_RUNS * args.runs // RUNS_NULL, 100)
    mix_runs = max(MIXTURE_CALIBRATION_RUNS * args.runs // RUNS_NULL, 100)
    if any(c.id in ORACLE_CELLS for c in chosen):
        oracle = calibrate_oracles(cal_runs, mix_runs, ORACLE_HORIZONS, seeds[-1])
        print(f"  oracle thresholds ({cal_runs} clean runs): {oracle}", file=sys.stderr, flush=True)
    results, limits = [], {}
    for cell, seed in zip(chosen, seeds[:-1], strict=True):
        runs = args.runs if not cell.regression else max(args.runs // 2, 1)
        r = simulate(cell, runs, seed, oracle)
        results.append(r)
        if cell.limit:
            limits[cell.id] = np_limit(cell)
        print(f"  {cell.id}: {runs} runs, {cell.minutes} min, {r.seconds:.0f} s", file=sys.stderr, flush=True)
    text = render(results, limits, time.perf_counter() - t0, args_list, oracle, (cal_runs, mix_runs))
    print(text)
    full = not wanted and args.runs >= RUNS_NULL
    if not args.no_write and full:
        write_outputs(text)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
