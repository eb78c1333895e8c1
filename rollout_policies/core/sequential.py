"""Anytime-valid canary-versus-baseline comparisons for rate metrics and latency histograms.

A gate that is watched continuously needs a test whose false-alarm rate holds however often it is
looked at. This module keeps, per comparison, an e-process (a nonnegative supermartingale under "no
regression") from the stage start and an e-detector (Shin, Ramdas and Rinaldo 2023) that restarts the
evidence at every interval, so a regression that begins late is caught nearly as fast as one that
begins at once. ``alpha`` is split between the two. The e-process rolls back at
``1 / ((1 - change_share) alpha)``: by Ville's inequality it alarms with probability at most
``(1 - change_share) alpha`` over an unbounded stream. The e-detector is a Shiryaev-Roberts sum of
e-processes started at every interval, each weighted ``1 / horizon``; it rolls back at
``1 / (change_share alpha)``. Within ``horizon`` intervals it alarms with probability at most
``change_share alpha``, and its average run length under the null is at least
``horizon / (change_share alpha)`` intervals.

The rate test conditions on the total number of events in each interval: for Poisson counts, given
``m = canary_events + baseline_events``, the canary's events are Binomial(m, pi) with
``pi = rho * n_c / (rho * n_c + n_b)``, where ``rho`` is the canary-to-baseline rate ratio. Load that
hits both versions alike (diurnal cycles, incidents) cancels out. The evidence is a mixture
likelihood ratio over a grid of ratios (a discretised mSPRT with a half-normal prior on ``log rho``).
Per-version jitter (overdispersion) is absorbed by a quasi-likelihood factor whose squared coefficient
of variation comes from the baseline's own history before the stage (``baseline_dispersion``), so it
is known when the canary starts, and is then updated from the stage's residuals.

Latency is compared bucket by bucket: at every histogram edge, the share of the canary's requests
slower than that edge is compared with the baseline's by the rate test, and the evidence is the
average over edges (an average of e-processes is one). Under "same latency distribution" every
edge's canary share is the traffic share; a tail-only regression moves the last edges, a shift all.

Pure: numpy only, no I/O, no clock. ``RateComparisonBatch`` runs many independent streams at once
(the benchmark uses it); ``RateComparison`` and ``LatencyComparison`` are the one-stream API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from rollout_policies.errors import UserError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The ratios the evidence is tracked on: log-spaced from 1/32 to 32, a tenth of a doubling apart (the
# likelihood in log rho is smooth, and any grid gives a valid mixture); exact null and tolerance
# points are added per comparison.
_GRID_LOG_MIN = float(np.log(1 / 32))
_GRID_LOG_MAX = float(np.log(32))
_GRID_POINTS = 97
# Overdispersion model: each version's rate wobbles from one interval to the next with squared
# coefficient of variation c2, so the canary's count given the total has variance e * (1 + 2 * c2 * e),
# e being the binomial variance. Without a history of the baseline, c2 starts at a deliberately
# pessimistic value (rates swinging by 100%) worth this many intervals, then follows the data: an
# underestimate would cost validity, an overestimate only speed.
_OVERDISPERSION_PRIOR_C2 = 1.0
_OVERDISPERSION_PRIOR_OBSERVATIONS = 2.0
# With a baseline history, its c2 is worth this many intervals of the stage's own residuals: an hour
# at 1-minute evaluation. The stage can still raise c2 when the canary wobbles more than the baseline.
DISPERSION_HISTORY_WEIGHT = 60.0
_EXTREME_C2 = 20.0  # a history whose pairs look like more jitter than a gamma model can give
# The e-detector's default horizon: the plan's longest stage (14 days) at 1-minute evaluation.
DEFAULT_HORIZON = 14 * 24 * 60
DEFAULT_CHANGE_SHARE = 0.5


class Outcome(StrEnum):
    """What a comparison concludes so far."""

    CONTINUE = "continue"  # not enough evidence either way yet
    REGRESSION = "regression"  # the canary is worse than the baseline: roll back
    NO_REGRESSION = "no_regression"  # any regression is smaller than the tolerance: may pass


_OUTCOME_CODES = (Outcome.CONTINUE, Outcome.REGRESSION, Outcome.NO_REGRESSION)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A comparison's verdict with its evidence.

    ``log_evidence`` is the natural log of the e-value against "no regression" accumulated since the
    stage start (REGRESSION once it reaches ``threshold``); ``log_detector`` the log of the e-detector
    (restarted evidence; REGRESSION once it reaches ``detector_threshold``). ``log_evidence_clean`` is
    the log e-value against "a regression of at least the tolerance" (NO_REGRESSION once it reaches
    ``log(1/alpha)``). ``estimate`` is the canary-to-baseline rate ratio of the pooled counts;
    ``lower`` and ``upper`` bound it by an anytime-valid ``1 - alpha`` confidence sequence.
    """

    verdict: Outcome
    log_evidence: float
    log_evidence_clean: float
    threshold: float  # log of the e-value that rolls back: log(1 / ((1 - change_share) alpha))
    estimate: float | None
    lower: float
    upper: float
    canary_events: float
    canary_trials: float
    baseline_events: float
    baseline_trials: float
    observations: int
    dispersion: float
    metric: str = "rate"  # "rate", or "latency p95" and the like
    alpha: float = 0.01
    log_detector: float = 0.0
    detector_threshold: float = float("inf")

    @property
    def e_value(self) -> float:
        """The e-value against "no regression" (may be ``inf`` when overwhelming)."""
        return float(np.exp(min(self.log_evidence, 700.0)))


def _logsumexp(a: FloatArray, axis: int) -> FloatArray:
    """log(sum(exp(a))) along an axis; rows that are all -inf give -inf (no warnings)."""
    peak = np.max(a, axis=axis, keepdims=True)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        out: FloatArray = np.log(np.sum(np.exp(a - safe), axis=axis)) + np.squeeze(safe, axis=axis)
    return out


def _half_normal_weights(offsets: FloatArray, scale: float) -> FloatArray:
    """Normalised weights of a half-normal prior on the log-ratio offsets (all positive)."""
    log_w = -0.5 * (offsets / scale) ** 2
    w = np.exp(log_w - log_w.max())
    out: FloatArray = w / w.sum()
    return out


def mixture_log_e(
    loglik: FloatArray, alternatives: IntArray, log_weights: FloatArray, null: int
) -> FloatArray:
    """The log e-value of a discrete mixture: log sum_i w_i L(alt_i) / L(null), per row of ``loglik``.

    ``loglik`` has one row per stream and one column per grid point (log-likelihoods or any
    log-martingale values); with a Gaussian log-likelihood and half-normal weights this is the
    one-sided normal mixture of Howard et al. (2021), which the tests check against confseq.
    """
    out: FloatArray = _logsumexp(loglik[:, alternatives] + log_weights[None, :], axis=1) - loglik[:, null]
    return out


def baseline_dispersion(
    events: npt.ArrayLike, trials: npt.ArrayLike, *, count_scale: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """The baseline's own jitter, from its history before the stage: (c2, intervals used), per stream.

    ``events`` and ``trials`` have one row per interval (oldest first) and one column per stream (or
    are 1-D for one stream). Intervals are taken in disjoint adjacent pairs: given the pair's total,
    the first interval's events are Binomial(m, n1 / (n1 + n2)) when the rate holds still, so the
    excess of their variance over the binomial's is the jitter, ``2 c2 e^2`` as in the comparison.
    Slow changes (diurnal load) cancel within a pair; incidents shared by every version do not, so
    they raise c2: that costs speed, never validity. Pairs without trials or events are skipped.
    """
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if x.ndim == 1:
        x, n = x[:, None], n[:, None]
    if x.shape != n.shape:
        raise UserError("events and trials of the baseline history need the same shape")
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(~np.isfinite(n)) or np.any(n < 0):
        raise UserError("baseline history counts must be finite and non-negative")
    pairs = x.shape[0] // 2
    x1, x2 = x[0 : 2 * pairs : 2], x[1 : 2 * pairs : 2]
    n1, n2 = n[0 : 2 * pairs : 2], n[1 : 2 * pairs : 2]
    m = x1 + x2
    ok = (n1 > 0) & (n2 > 0) & (m > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.where(ok, n1 / (n1 + n2), 0.0)
    e = m * pi * (1 - pi)
    excess = np.where(ok, (x1 - m * pi) ** 2 - count_scale * e, 0.0).sum(axis=0)
    scale = np.where(ok, 2.0 * e**2, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        seen = np.where(scale > 0, np.maximum(excess / np.where(scale > 0, scale, 1.0), 0.0), np.nan)
    # Within an equal-exposure pair the first interval's share of gamma-jittered rates is Beta(k, k)
    # with k = 1 / c2, whose variance reads as 2 c2 / (2 + c2) here, not c2: invert that, so the
    # prior is right for a small canary share, where the delta-method variance 2 c2 e^2 is exact.
    c2 = np.where(seen < 1.9, 2 * seen / (2 - np.minimum(seen, 1.9)), _EXTREME_C2)
    used: FloatArray = 2.0 * ok.sum(axis=0).astype(np.float64)
    out: FloatArray = np.where(np.isfinite(seen), c2, np.nan)
    return out, used


class RateComparisonBatch:
    """Many independent canary-versus-baseline rate comparisons, advanced together.

    Every argument of :meth:`observe` is an array with one entry per stream (or a scalar). Counts are
    the increments since the previous call (events and trials in that interval), per version.
    ``dispersion_prior``: the baseline's jitter c2 from its history (``baseline_dispersion``), per
    stream or one value; NaN or None fall back to the pessimistic start. ``horizon`` and
    ``change_share``: the e-detector's span in intervals and its share of ``alpha`` (0 turns it off).
    """

    def __init__(
        self,
        size: int,
        *,
        alpha: float = 0.01,
        margin: float = 0.0,
        tolerance: float = 1.5,
        dispersion: float | None = None,
        prior_scale: float = float(np.log(2.5)),
        dispersion_prior: npt.ArrayLike | None = None,
        horizon: int = DEFAULT_HORIZON,
        change_share: float = DEFAULT_CHANGE_SHARE,
        count_scale: float = 1.0,
        baseline_rate: npt.ArrayLike | None = None,
    ) -> None:
        if not 0 < alpha < 1:
            raise UserError(f"alpha must be between 0 and 1, got {alpha}")
        if margin < 0:
            raise UserError(f"margin must be at least 0, got {margin}")
        if tolerance <= 1 + margin:
            raise UserError(f"tolerance must exceed 1 + margin ({1 + margin:g}), got {tolerance}")
        if dispersion is not None and dispersion < 1:
            raise UserError(f"dispersion must be at least 1 (or None to estimate it), got {dispersion}")
        if size < 1:
            raise UserError(f"size must be at least 1, got {size}")
        if not 0 <= change_share < 1:
            raise UserError(f"change_share must be at least 0 and below 1, got {change_share}")
        if horizon < 1:
            raise UserError(f"horizon must be at least 1 interval, got {horizon}")
        if count_scale < 1:
            raise UserError(f"count_scale must be at least 1, got {count_scale}")
        self.size = size
        self.count_scale = float(count_scale)
        self.alpha = alpha
        self.margin = margin
        self.tolerance = tolerance
        self.fixed_dispersion = dispersion
        self.horizon = int(horizon)
        self.change_share = change_share
        self.clean_threshold = float(np.log(1 / alpha))
        self.threshold = float(np.log(1 / ((1 - change_share) * alpha)))
        # The e-detector's starts weigh 1/horizon each, so it alarms at 1/(change_share alpha): within
        # the horizon, sum_j M_j / horizon is below a test supermartingale that starts at 1.
        self.detector_threshold = float(np.log(1 / (change_share * alpha))) if change_share > 0 else np.inf
        null_log = float(np.log1p(margin))
        tol_log = float(np.log(tolerance))
        grid = np.linspace(_GRID_LOG_MIN, _GRID_LOG_MAX, _GRID_POINTS)
        self.log_ratios: FloatArray = np.unique(np.concatenate([grid, [0.0, null_log, tol_log]]))
        self._ratios: FloatArray = np.exp(self.log_ratios)
        self._null = int(np.searchsorted(self.log_ratios, null_log))
        self._tol = int(np.searchsorted(self.log_ratios, tol_log))
        # Regression evidence: alternatives above the null, mixed by a half-normal prior on log rho.
        above = self.log_ratios > null_log
        self._reg_idx = np.flatnonzero(above)
        self._reg_logw = np.log(_half_normal_weights(self.log_ratios[above] - null_log, prior_scale))
        # Clean evidence: alternatives below the tolerance, centred on "no change" (rho = 1).
        below = self.log_ratios < tol_log
        self._clean_idx = np.flatnonzero(below)
        self._clean_logw = np.log(_half_normal_weights(tol_log - self.log_ratios[below], max(tol_log, 0.1)))
        self.prior_scale = prior_scale
        g = self.log_ratios.size
        # Cumulative (dispersion-scaled) conditional log-likelihood of every tracked ratio.
        self.loglik: FloatArray = np.zeros((size, g))
        # The e-detector per alternative: log of sum over start intervals j of w_j prod_{i>=j} LR_i.
        self._detector: FloatArray = np.full((size, self._reg_idx.size), -np.inf)
        # Cumulative heavy-tail charge per regression alternative (see _tail_penalty).
        self._penalty: FloatArray = np.zeros((size, self._reg_idx.size))
        self.canary_events: FloatArray = np.zeros(size)
        self.canary_trials: FloatArray = np.zeros(size)
        self.baseline_events: FloatArray = np.zeros(size)
        self.baseline_trials: FloatArray = np.zeros(size)
        self.observations = 0
        # Per grid ratio: the sum of (squared residual - binomial variance) of the canary's count.
        self._excess: FloatArray = np.zeros((size, g))
        self._excess_scale: FloatArray = np.zeros(size)  # sum of 2 e^2: what c2 multiplies
        self._informative: FloatArray = np.zeros(size)  # observations with events
        prior = np.full(size, np.nan) if dispersion_prior is None else np.asarray(dispersion_prior, float)
        prior = np.broadcast_to(prior, (size,)).astype(np.float64)
        known = np.isfinite(prior) & (prior >= 0)
        self._prior_c2: FloatArray = np.where(known, prior, _OVERDISPERSION_PRIOR_C2)
        self._prior_weight: FloatArray = np.where(
            known, DISPERSION_HISTORY_WEIGHT, _OVERDISPERSION_PRIOR_OBSERVATIONS
        )
        # The baseline's rate before the stage, worth this many of the stage's trials: the expected
        # total of the first intervals comes from it, not from the realised (jittered) total.
        rate = np.full(size, np.nan) if baseline_rate is None else np.asarray(baseline_rate, float)
        rate = np.broadcast_to(rate, (size,)).astype(np.float64)
        self._prior_rate: FloatArray = np.where(np.isfinite(rate) & (rate > 0), rate, 0.0)
        self.last_dispersion: FloatArray = np.ones(size)
        self.regressed: npt.NDArray[np.bool_] = np.zeros(size, dtype=bool)
        self.cleared: npt.NDArray[np.bool_] = np.zeros(size, dtype=bool)
        self._cs_log_weights: FloatArray | None = None

    def overdispersion(self) -> FloatArray:
        """The squared coefficient of variation of the rates between observations (c2 >= 0).

        The baseline history's c2 (or the pessimistic start) pooled with the stage's residuals, which
        are taken around the maximum-likelihood ratio of the data so far (kept for every grid ratio),
        so a real regression, which early estimates miss, does not read as noise.
        """
        n = self._informative
        best = np.argmax(self.loglik, axis=1)
        excess = self._excess[np.arange(self.size), best]
        with np.errstate(divide="ignore", invalid="ignore"):
            observed = np.where(self._excess_scale > 0, excess / self._excess_scale, 0.0)
        n0 = self._prior_weight
        out: FloatArray = np.maximum(0.0, (n0 * self._prior_c2 + n * observed) / (n0 + n))
        return out

    def estimate(self) -> FloatArray:
        """The pooled canary-to-baseline rate ratio (NaN before both versions have events/trials)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rc = self.canary_events / self.canary_trials
            rb = self.baseline_events / self.baseline_trials
            out: FloatArray = np.where(
                (self.canary_trials > 0) & (self.baseline_trials > 0) & (rb > 0), rc / rb, np.nan
            )
        return out

    def observe(
        self,
        canary_events: npt.ArrayLike,
        canary_trials: npt.ArrayLike,
        baseline_events: npt.ArrayLike,
        baseline_trials: npt.ArrayLike,
    ) -> IntArray:
        """Add one interval's counts per stream; return each stream's outcome code (see ``decode``)."""
        xc = np.broadcast_to(np.asarray(canary_events, dtype=np.float64), (self.size,))
        nc = np.broadcast_to(np.asarray(canary_trials, dtype=np.float64), (self.size,))
        xb = np.broadcast_to(np.asarray(baseline_events, dtype=np.float64), (self.size,))
        nb = np.broadcast_to(np.asarray(baseline_trials, dtype=np.float64), (self.size,))
        for name, arr in (
            ("canary_events", xc),
            ("canary_trials", nc),
            ("baseline_events", xb),
            ("baseline_trials", nb),
        ):
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise UserError(f"{name} must be finite and non-negative")
        if np.any(xc > nc) or np.any(xb > nb):
            raise UserError("events cannot exceed trials")

        informative = (nc > 0) & (nb > 0) & (xc + xb > 0)
        # Everything about the dispersion comes from past observations and this one's total (the
        # test conditions on it), around the past ratio estimate, so the scaling stays predictable
        # and a real regression does not inflate it.
        rho_hat = self.estimate()
        rho_null = float(np.exp(self.log_ratios[self._null]))
        # Never below the null: an early low estimate (a canary minute that happened to be quiet)
        # would shrink the variance the next intervals are judged with.
        rho_hat = np.where(np.isfinite(rho_hat) & (rho_hat > rho_null), rho_hat, rho_null)
        with np.errstate(divide="ignore", invalid="ignore"):
            pi_hat = np.where(informative, rho_hat * nc / (rho_hat * nc + nb), 0.0)
        m = xc + xb
        # The scale uses the total expected from past rates and this observation's trials, not the
        # realised total: a low total goes with a high canary share when the rates wobble apart,
        # and weighting those observations more would bias the evidence upwards.
        seen = self.canary_trials + self.baseline_trials
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled_rate = (self.canary_events + self.baseline_events) / seen
        pooled_rate = np.where((seen > 0) & (pooled_rate > 0), pooled_rate, self._prior_rate)
        m_expected = np.where(pooled_rate > 0, pooled_rate * (nc + nb), m)
        scale_var = m_expected * pi_hat * (1 - pi_hat)
        # count_scale: Prometheus' increase() sees (window - scrape) of each window and scales it up
        # to the window, so one real event reads as count_scale events; the variance scales alike.
        c2 = self.overdispersion() if self.fixed_dispersion is None else np.zeros(self.size)
        if self.fixed_dispersion is not None:
            phi = np.full(self.size, float(self.fixed_dispersion) * self.count_scale)
        else:
            phi = self.count_scale + 2.0 * c2 * scale_var
        # pi(rho) = odds / (1 + odds) with odds = rho n_c / n_b. Only streams with events in this
        # interval are computed: for the others every term is exactly 0.
        rows = np.flatnonzero(informative)
        share = nc[rows] / nb[rows]
        xc_i = xc[rows][:, None]
        m_i = m[rows][:, None]
        odds = self._ratios[None, :] * share[:, None]
        log1p_odds = np.log1p(odds)
        log_odds = self.log_ratios[None, :] + np.log(share)[:, None]
        # x_c log pi + x_b log(1 - pi) = x_c log(odds) - m log(1 + odds)
        step = (xc_i * log_odds - m_i * log1p_odds) * (1.0 / phi[rows])[:, None]
        self.loglik[rows] += step
        ratio_step = np.zeros((self.size, self._reg_idx.size))
        ratio_step[rows] = step[:, self._reg_idx] - step[:, self._null][:, None]
        if self.fixed_dispersion is None and rows.size:
            charge = self._tail_penalty(
                c2[rows], phi[rows], scale_var[rows], (m_expected * pi_hat)[rows], ratio_step[rows]
            )
            self._penalty[rows] += charge
            ratio_step[rows] -= charge

        # The e-detector (Shin, Ramdas and Rinaldo): a Shiryaev-Roberts sum over start intervals,
        # one new start of weight 1/horizon per interval, per alternative ratio.
        self._detector = ratio_step + np.logaddexp(self._detector, -np.log(self.horizon))

        pi_grid = odds / (1.0 + odds)
        m_grid = m_i * pi_grid
        self._excess[rows] += (xc_i - m_grid) ** 2 - self.count_scale * m_grid * (1.0 - pi_grid)
        self._excess_scale += np.where(informative, 2.0 * scale_var**2, 0.0)
        self._informative += informative
        self.last_dispersion = np.where(informative, phi, self.last_dispersion)

        self.canary_events += xc
        self.canary_trials += nc
        self.baseline_events += xb
        self.baseline_trials += nb
        self.observations += 1

        self.regressed |= (self.log_evidence() >= self.threshold) | (
            self.log_detector() >= self.detector_threshold
        )
        self.cleared |= self.log_evidence_clean() >= self.clean_threshold
        return self.codes()

    def _tail_penalty(
        self,
        c2: FloatArray,
        phi: FloatArray,
        scale_var: FloatArray,
        canary: FloatArray,
        ratio_step: FloatArray,
    ) -> FloatArray:
        """Per regression alternative, this interval's extra compensator for the jitter's heavy tail.

        The quasi-likelihood tilts the canary's count by lambda = log(rho / rho0) / phi and charges
        the Gaussian-like cumulant v lambda^2 / 2 (v = phi e). A rate that jitters like a gamma variable
        has an exponential upper tail of scale b = c2 * (expected canary count), and its cumulant is
        bounded by the sub-gamma form v lambda^2 / (2 (1 - b lambda)) (Howard et al. 2020), so the
        difference is charged here. An alternative with b lambda >= 1 sits this interval out: its
        factor is 1 (the whole step is charged), a predictable choice, so the product stays an
        e-process. With c2 = 0 (clean counts) the charge is 0 and the test is the binomial one.
        """
        b = (c2 * canary)[:, None]
        lam = (self.log_ratios[self._reg_idx] - self.log_ratios[self._null])[None, :] / phi[:, None]
        v = (phi * scale_var)[:, None]
        bl = b * lam
        with np.errstate(divide="ignore", invalid="ignore"):
            out: FloatArray = np.where(bl < 1.0, v * lam**2 * bl / (2.0 * (1.0 - bl)), ratio_step)
        return out

    def log_evidence(self) -> FloatArray:
        """Log e-value against "no regression" (rate ratio at most 1 + margin), per stream."""
        alt = self.loglik[:, self._reg_idx] - self._penalty + self._reg_logw[None, :]
        out: FloatArray = _logsumexp(alt, axis=1) - self.loglik[:, self._null]
        return out

    def log_detector(self) -> FloatArray:
        """Log of the e-detector: evidence restarted at every interval, mixed over ratios, per stream."""
        out: FloatArray = _logsumexp(self._detector + self._reg_logw[None, :], axis=1)
        return out

    def log_evidence_clean(self) -> FloatArray:
        """Log e-value against "a regression of at least the tolerance", per stream."""
        return mixture_log_e(self.loglik, self._clean_idx, self._clean_logw, self._tol)

    def codes(self) -> IntArray:
        """Outcome codes: 0 continue, 1 regression (latched), 2 no regression (latched)."""
        out: IntArray = np.where(self.regressed, 1, np.where(self.cleared, 2, 0)).astype(np.int64)
        return out

    @staticmethod
    def decode(code: int) -> Outcome:
        return _OUTCOME_CODES[int(code)]

    def interval(self, index: int = 0) -> tuple[float, float]:
        """The anytime-valid confidence sequence for one stream's ratio, at this observation.

        The set of grid ratios that a two-sided mixture e-process (half-normal each side, half the
        weight each) has not rejected at ``alpha``. Ends at the grid's edge become 0 and inf.
        """
        ll = self.loglik[index]
        lr = self.log_ratios
        log_e = _logsumexp(self._interval_log_weights() + ll[None, :], axis=1) - ll
        inside = np.flatnonzero(log_e < self.clean_threshold)
        if inside.size == 0:
            return (float("nan"), float("nan"))
        lo_i, hi_i = int(inside[0]), int(inside[-1])
        lower = 0.0 if lo_i == 0 else float(np.exp(lr[lo_i]))
        upper = float("inf") if hi_i == lr.size - 1 else float(np.exp(lr[hi_i]))
        return (lower, upper)

    def _interval_log_weights(self) -> FloatArray:
        """Row per null ratio: log weights of the alternatives (half on each side, half-normal)."""
        if self._cs_log_weights is None:
            lr = self.log_ratios
            diff = lr[None, :] - lr[:, None]
            base = -0.5 * (diff / self.prior_scale) ** 2
            weights = np.zeros_like(base)
            for side in (diff > 0, diff < 0):
                w = np.where(side, np.exp(base), 0.0)
                total = w.sum(axis=1, keepdims=True)
                weights += np.divide(0.5 * w, total, out=np.zeros_like(w), where=total > 0)
            with np.errstate(divide="ignore"):
                self._cs_log_weights = np.log(weights)
        return self._cs_log_weights

    def comparison(self, index: int = 0, *, metric: str = "rate") -> Comparison:
        """One stream's current verdict and evidence."""
        est = float(self.estimate()[index])
        lower, upper = self.interval(index)
        return Comparison(
            verdict=self.decode(int(self.codes()[index])),
            log_evidence=float(self.log_evidence()[index]),
            log_evidence_clean=float(self.log_evidence_clean()[index]),
            threshold=self.threshold,
            estimate=None if np.isnan(est) else est,
            lower=lower,
            upper=upper,
            canary_events=float(self.canary_events[index]),
            canary_trials=float(self.canary_trials[index]),
            baseline_events=float(self.baseline_events[index]),
            baseline_trials=float(self.baseline_trials[index]),
            observations=self.observations,
            dispersion=float(self.last_dispersion[index]),
            metric=metric,
            alpha=self.alpha,
            log_detector=float(self.log_detector()[index]),
            detector_threshold=self.detector_threshold,
        )


class RateComparison:
    """A streaming comparison of the canary's rate of bad events (errors, crashes) against the baseline.

    >>> cmp = RateComparison(alpha=0.01)
    >>> cmp.observe(canary_events=3, canary_trials=1000, baseline_events=250, baseline_trials=99000)
    ... # doctest: +ELLIPSIS
    Comparison(verdict=<Outcome.CONTINUE: 'continue'>, ...)

    ``margin``: a canary rate up to ``baseline * (1 + margin)`` is not a regression. ``tolerance``: the
    ratio below which a canary may be passed (NO_REGRESSION). ``dispersion``: a fixed factor >= 1 by
    which the counts are more variable than Poisson, or None to estimate it. ``dispersion_prior``: the
    baseline's jitter c2 from its history (``baseline_dispersion``). ``horizon``, ``change_share``:
    the e-detector's span in intervals and share of alpha.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        margin: float = 0.0,
        tolerance: float = 1.5,
        dispersion: float | None = None,
        dispersion_prior: float | None = None,
        horizon: int = DEFAULT_HORIZON,
        change_share: float = DEFAULT_CHANGE_SHARE,
    ) -> None:
        self._batch = RateComparisonBatch(
            1,
            alpha=alpha,
            margin=margin,
            tolerance=tolerance,
            dispersion=dispersion,
            dispersion_prior=dispersion_prior,
            horizon=horizon,
            change_share=change_share,
        )

    def observe(
        self, canary_events: float, canary_trials: float, baseline_events: float, baseline_trials: float
    ) -> Comparison:
        """Add the counts of one interval (increments, not running totals) and return the verdict."""
        self._batch.observe(canary_events, canary_trials, baseline_events, baseline_trials)
        return self.verdict

    @property
    def verdict(self) -> Comparison:
        return self._batch.comparison(0)


def exceedance_cut(baseline_hist: FloatArray, quantile: float) -> IntArray:
    """Per stream, the first bucket index above the baseline's ``quantile`` (-1 while it has no data).

    ``baseline_hist`` has shape (streams, buckets), non-cumulative counts with the +Inf bucket last.
    Requests in buckets from the returned index on count as slow: the bucket that contains the
    quantile is the last one below the cut, so the cut sits at the first bucket edge at or above it.
    """
    total = baseline_hist.sum(axis=1)
    cum = np.cumsum(baseline_hist, axis=1)
    reached = cum >= quantile * total[:, None]
    first = np.argmax(reached, axis=1) + 1
    last = baseline_hist.shape[1] - 1  # never cut above the +Inf bucket: that would count nothing
    out: IntArray = np.where(total > 0, np.minimum(first, last), -1).astype(np.int64)
    return out


def _tails(hist: FloatArray) -> FloatArray:
    """Per stream and finite edge k, the requests slower than edge k (buckets k+1 onwards)."""
    reverse = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]
    out: FloatArray = reverse[..., 1:]
    return out


def histogram_dispersion(baseline_hists: npt.ArrayLike, *, count_scale: float = 1.0) -> FloatArray:
    """Per stream and edge, the baseline's jitter c2 of "slower than the edge" from its history.

    ``baseline_hists`` has shape (intervals, streams, buckets) (or (intervals, buckets) for one
    stream): non-cumulative counts, the +Inf bucket last, oldest first. See ``baseline_dispersion``.
    """
    h = np.asarray(baseline_hists, dtype=np.float64)
    if h.ndim == 2:
        h = h[:, None, :]
    tails = _tails(h)  # (intervals, streams, edges)
    totals = np.broadcast_to(h.sum(axis=-1)[..., None], tails.shape)
    t, s, k = tails.shape
    c2, _ = baseline_dispersion(tails.reshape(t, s * k), totals.reshape(t, s * k), count_scale=count_scale)
    out: FloatArray = c2.reshape(s, k)
    return out


class LatencyComparisonBatch:
    """Many independent canary-versus-baseline latency-histogram comparisons, advanced together.

    Each call gives one interval's histograms per stream, shape (streams, len(edges) + 1): counts
    per bucket (not cumulative), the last bucket is +Inf. At every finite edge, the requests slower
    than it are the "events" of a rate comparison; the evidence against "same distribution" is the
    average of the edges' e-processes (and of their e-detectors), so any edge that moves counts,
    the tail's as much as the median's. ``quantile`` only chooses the edge reported and the one that
    must be shown below ``tolerance`` to pass: the first edge at or above the baseline's quantile.
    The verdict comes from every edge; the report shows the ratio at that edge.
    """

    def __init__(
        self,
        size: int,
        edges: Sequence[float] | FloatArray,
        *,
        quantile: float = 0.95,
        alpha: float = 0.01,
        margin: float = 0.0,
        tolerance: float = 1.5,
        dispersion: float | None = None,
        dispersion_prior: npt.ArrayLike | None = None,
        horizon: int = DEFAULT_HORIZON,
        change_share: float = DEFAULT_CHANGE_SHARE,
        count_scale: float = 1.0,
    ) -> None:
        if not 0 < quantile < 1:
            raise UserError(f"quantile must be between 0 and 1, got {quantile}")
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise UserError("edges must be at least two increasing bucket upper bounds")
        self.edges: FloatArray = e
        self.size = size
        self.quantile = quantile
        k = e.size
        prior = None
        if dispersion_prior is not None:
            prior = np.broadcast_to(np.asarray(dispersion_prior, dtype=np.float64), (size, k)).reshape(-1)
        self.cuts = RateComparisonBatch(
            size * k,
            alpha=alpha,
            margin=margin,
            tolerance=tolerance,
            dispersion=dispersion,
            dispersion_prior=prior,
            horizon=horizon,
            change_share=change_share,
            count_scale=count_scale,
        )
        self.alpha = alpha
        self.threshold = self.cuts.threshold
        self.detector_threshold = self.cuts.detector_threshold
        self._log_edges = float(np.log(k))
        self._baseline_hist: FloatArray = np.zeros((size, k + 1))
        self.cut: IntArray = np.full(size, -1, dtype=np.int64)
        self.regressed: npt.NDArray[np.bool_] = np.zeros(size, dtype=bool)
        self.cleared: npt.NDArray[np.bool_] = np.zeros(size, dtype=bool)

    def _per_edge(self, values: FloatArray) -> FloatArray:
        out: FloatArray = values.reshape(self.size, self.edges.size)
        return out

    def log_evidence(self) -> FloatArray:
        """Log of the average over edges of their e-values since the stage start, per stream."""
        out: FloatArray = _logsumexp(self._per_edge(self.cuts.log_evidence()), axis=1) - self._log_edges
        return out

    def log_detector(self) -> FloatArray:
        """Log of the average over edges of their e-detectors, per stream."""
        out: FloatArray = _logsumexp(self._per_edge(self.cuts.log_detector()), axis=1) - self._log_edges
        return out

    def observe(self, canary_hist: npt.ArrayLike, baseline_hist: npt.ArrayLike) -> IntArray:
        """Add one interval's histograms per stream; return outcome codes as RateComparisonBatch."""
        shape = (self.size, self.edges.size + 1)
        c = np.asarray(canary_hist, dtype=np.float64)
        b = np.asarray(baseline_hist, dtype=np.float64)
        if c.shape != shape or b.shape != shape:
            raise UserError(f"histograms need shape {shape} (streams, the edges plus +Inf)")
        if np.any(c < 0) or np.any(b < 0) or not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
            raise UserError("bucket counts must be finite and non-negative")
        k = self.edges.size
        tc, tb = _tails(c), _tails(b)
        # Totals from the same running sums, so rounding never puts a tail above its total.
        nc = np.repeat(np.maximum(c.sum(axis=1), tc[:, 0]), k)
        nb = np.repeat(np.maximum(b.sum(axis=1), tb[:, 0]), k)
        self.cuts.observe(np.minimum(tc.reshape(-1), nc), nc, np.minimum(tb.reshape(-1), nb), nb)
        self._baseline_hist += b
        self.cut = exceedance_cut(self._baseline_hist, self.quantile)
        self.regressed |= (self.log_evidence() >= self.threshold) | (
            self.log_detector() >= self.detector_threshold
        )
        edge = np.maximum(self.cut - 1, 0)
        clean = self._per_edge(self.cuts.log_evidence_clean())[np.arange(self.size), edge]
        self.cleared |= (self.cut >= 0) & (clean >= self.cuts.clean_threshold)
        out: IntArray = np.where(self.regressed, 1, np.where(self.cleared, 2, 0)).astype(np.int64)
        return out

    def reported_edge(self, index: int = 0) -> int:
        """The edge a report shows: the first at or above the baseline's ``quantile``."""
        return max(int(self.cut[index]) - 1, 0)

    def threshold_seconds(self, index: int = 0) -> float:
        """The latency above which a request counts as slow in the reported edge (NaN: no data yet)."""
        if self.cut[index] < 0:
            return float("nan")
        return float(self.edges[self.reported_edge(index)])

    def comparison(self, index: int = 0, *, metric: str = "latency") -> Comparison:
        """One stream's verdict, with the reported edge's counts and ratio."""
        edge = self.reported_edge(index)
        part = self.cuts.comparison(index * self.edges.size + edge, metric=metric)
        code = 1 if self.regressed[index] else (2 if self.cleared[index] else 0)
        return Comparison(
            verdict=_OUTCOME_CODES[code],
            log_evidence=float(self.log_evidence()[index]),
            log_evidence_clean=part.log_evidence_clean,
            threshold=self.threshold,
            estimate=part.estimate,
            lower=part.lower,
            upper=part.upper,
            canary_events=part.canary_events,
            canary_trials=part.canary_trials,
            baseline_events=part.baseline_events,
            baseline_trials=part.baseline_trials,
            observations=part.observations,
            dispersion=part.dispersion,
            metric=metric,
            alpha=self.alpha,
            log_detector=float(self.log_detector()[index]),
            detector_threshold=self.detector_threshold,
        )


class LatencyComparison:
    """A streaming comparison of the canary's latency distribution against the baseline's.

    Feed each interval as histograms (bucket upper bounds and per-version counts, as Prometheus
    ``_bucket`` series give them after differencing) or as raw samples. At every bucket edge the
    canary's share of slower requests is compared with the baseline's; a regression means the canary
    has more slow requests past some edge. ``estimate`` is the ratio of those shares at the reported
    edge (``threshold_seconds``): the first edge past the baseline's ``quantile`` (2.0: twice the
    baseline's share of requests past it).
    """

    def __init__(
        self,
        *,
        quantile: float = 0.95,
        alpha: float = 0.01,
        margin: float = 0.0,
        tolerance: float = 1.5,
        dispersion: float | None = None,
        edges: Sequence[float] | None = None,
        dispersion_prior: npt.ArrayLike | None = None,
        horizon: int = DEFAULT_HORIZON,
        change_share: float = DEFAULT_CHANGE_SHARE,
    ) -> None:
        # Default buckets for raw samples (seconds): log-spaced from 1 ms to 60 s, ~10% apart.
        bounds = np.geomspace(1e-3, 60.0, 116) if edges is None else np.asarray(edges, dtype=np.float64)
        self._batch = LatencyComparisonBatch(
            1,
            bounds,
            quantile=quantile,
            alpha=alpha,
            margin=margin,
            tolerance=tolerance,
            dispersion=dispersion,
            dispersion_prior=dispersion_prior,
            horizon=horizon,
            change_share=change_share,
        )

    @property
    def edges(self) -> FloatArray:
        return self._batch.edges

    def observe_histogram(
        self, edges: Sequence[float], canary_counts: Sequence[float], baseline_counts: Sequence[float]
    ) -> Comparison:
        """Add one interval as bucket counts (not cumulative; the last count is the +Inf bucket)."""
        if not np.array_equal(np.asarray(edges, dtype=np.float64), self._batch.edges):
            raise UserError("edges must be the same bucket upper bounds on every call")
        self._batch.observe(np.asarray([canary_counts]), np.asarray([baseline_counts]))
        return self.verdict

    def observe(self, canary_samples: Sequence[float], baseline_samples: Sequence[float]) -> Comparison:
        """Add one interval's raw latency samples (seconds) per version."""
        bins = np.concatenate([[-np.inf], self._batch.edges, [np.inf]])
        c, _ = np.histogram(np.asarray(canary_samples, dtype=np.float64), bins=bins)
        b, _ = np.histogram(np.asarray(baseline_samples, dtype=np.float64), bins=bins)
        self._batch.observe(c[None, :].astype(np.float64), b[None, :].astype(np.float64))
        return self.verdict

    @property
    def threshold_seconds(self) -> float:
        return self._batch.threshold_seconds(0)

    @property
    def verdict(self) -> Comparison:
        return self._batch.comparison(0, metric=f"latency p{self._batch.quantile * 100:g}")


def comparison_evidence(comparison: Comparison) -> dict[str, Any]:
    """The evidence of a comparison gate as plain values, for a report table row and its JSON.

    Keys: verdict, metric, log_e_value, e_value, log_threshold, alpha, log_e_value_clean,
    log_detector, log_detector_threshold, ratio (pooled estimate), ratio_lower, ratio_upper,
    canary/baseline events and trials, observations, dispersion, and ``summary``: a one-line text
    for a table cell.
    """
    c = comparison
    upper = None if np.isinf(c.upper) else round(c.upper, 4)
    ratio = None if c.estimate is None else round(c.estimate, 4)
    shown_ratio = "n/a" if ratio is None else f"{ratio:.2f}x"
    shown_upper = "inf" if upper is None else f"{upper:.2f}"
    summary = (
        f"{c.verdict.value}: {c.metric} ratio {shown_ratio} "
        f"[{c.lower:.2f}, {shown_upper}], e={c.e_value:.3g} (rollback at {np.exp(c.threshold):.3g}), "
        f"canary {c.canary_events:,.0f}/{c.canary_trials:,.0f} "
        f"vs baseline {c.baseline_events:,.0f}/{c.baseline_trials:,.0f}"
    )
    detector_threshold = round(c.detector_threshold, 4) if np.isfinite(c.detector_threshold) else None
    return {
        "verdict": c.verdict.value,
        "metric": c.metric,
        "log_e_value": round(c.log_evidence, 4),
        "e_value": c.e_value if np.isfinite(c.e_value) else None,
        "log_threshold": round(c.threshold, 4),
        "alpha": round(c.alpha, 6),
        "log_e_value_clean": round(c.log_evidence_clean, 4),
        "log_detector": round(c.log_detector, 4) if np.isfinite(c.log_detector) else None,
        "log_detector_threshold": detector_threshold,
        "ratio": ratio,
        "ratio_lower": round(c.lower, 4),
        "ratio_upper": upper,
        "canary_events": c.canary_events,
        "canary_trials": c.canary_trials,
        "baseline_events": c.baseline_events,
        "baseline_trials": c.baseline_trials,
        "observations": c.observations,
        "dispersion": round(c.dispersion, 4),
        "summary": summary,
    }
