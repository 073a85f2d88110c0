"""Power-law fit of validation loss against training compute, and its inverse.

L(C) = a * C^(-b) + E. The pure power law (E = 0) is a straight line in log-log space, fitted by
least squares. The irreducible term E is tried too, by profiling: for each candidate E below the
lowest measured loss, log(L - E) against log C is again a straight line. E is kept only when it wins
on AICc, so a handful of noisy points cannot buy a curved fit that extrapolates to nonsense.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3  # a 2-parameter line through fewer points has no residual to judge it by
MIN_POINTS_IRREDUCIBLE = 5  # AICc of a 3-parameter fit is undefined below n = k + 2


@dataclass(frozen=True)
class Fit:
    a: float
    b: float  # > 0 means loss falls with compute
    irreducible: float  # E; 0.0 for the pure power law
    points: int
    r2: float  # of log L, so it reads the same whatever the loss scale

    @property
    def decreasing(self) -> bool:
        return self.b > 0

    def loss_at(self, compute: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(compute, -self.b) + self.irreducible

    def describe(self) -> str:
        base = f"L(C) = {self.a:.4g} · C^(-{self.b:.4g})"
        if self.irreducible > 0:
            base += f" + {self.irreducible:.4g}"
        return base


def _line_fit(log_c: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    """Least-squares log_y = log_a - b * log_c; returns (a, b)."""
    slope, intercept = np.polyfit(log_c, log_y, 1)
    return math.exp(intercept), -slope


def _sse_log(c: np.ndarray, loss: np.ndarray, a: float, b: float, e: float) -> float:
    predicted = a * np.power(c, -b) + e
    return float(np.sum((np.log(loss) - np.log(predicted)) ** 2))


def _aicc(sse: float, n: int, k: int) -> float:
    sse = max(sse, n * 1e-20)  # exact synthetic data would otherwise give log(0)
    return n * math.log(sse / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _best_irreducible(c: np.ndarray, loss: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, E, sse) minimising the log-loss residuals over E in [0, min loss), coarse then fine grid."""
    lo, hi = 0.0, float(loss.min())
    best = (0.0, 0.0, 0.0, math.inf)
    for _ in range(3):  # each round zooms into the neighbourhood of the best E so far
        grid = np.linspace(lo, hi, 201)
        grid = grid[grid < loss.min()]
        for e in grid:
            a, b = _line_fit(np.log(c), np.log(loss - e))
            sse = _sse_log(c, loss, a, b, e)
            if sse < best[3]:
                best = (a, b, float(e), sse)
        step = (hi - lo) / 200
        lo, hi = max(0.0, best[2] - step), min(float(loss.min()), best[2] + step)
    return best


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> Fit:
    """Fit L(C) = a * C^(-b) (+ E if it fits clearly better). Raises ValueError on unusable data."""
    c = np.asarray(compute, dtype=float)
    y = np.asarray(loss, dtype=float)
    if c.shape != y.shape or c.ndim != 1:
        raise ValueError("compute and loss must be 1-D and the same length")
    keep = np.isfinite(c) & np.isfinite(y) & (c > 0) & (y > 0)
    c, y = c[keep], y[keep]
    n = len(c)
    if n < MIN_POINTS or len(np.unique(c)) < 2:
        raise ValueError(f"need at least {MIN_POINTS} points at distinct positive compute, got {n}")

    a, b = _line_fit(np.log(c), np.log(y))
    sse = _sse_log(c, y, a, b, 0.0)
    chosen = (a, b, 0.0, sse)
    if n >= MIN_POINTS_IRREDUCIBLE and b > 0:
        a_e, b_e, e, sse_e = _best_irreducible(c, y)
        if e > 0 and b_e > 0 and _aicc(sse_e, n, 3) < _aicc(sse, n, 2):
            chosen = (a_e, b_e, e, sse_e)

    a, b, e, sse = chosen
    total = float(np.sum((np.log(y) - np.log(y).mean()) ** 2))
    r2 = 1.0 - sse / total if total > 0 else 1.0
    return Fit(a=a, b=b, irreducible=e, points=n, r2=r2)


def compute_to_reach(fit: Fit, loss: float) -> float | None:
    """Compute C at which the fit predicts `loss`; None if the fit never gets there."""
    if not fit.decreasing or loss <= fit.irreducible or not math.isfinite(loss):
        return None
    return (fit.a / (loss - fit.irreducible)) ** (1.0 / fit.b)


# ------------------------------------------------------------------ the from-scratch frontier and bounds

MAX_EXTRAPOLATION = 30.0  # a fit is never read further than this factor past the largest measured compute


def frontier(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The compute-efficient frontier of several runs' (compute, loss) curves.

    At each measured compute C: the lowest loss any run had reached by C (a run can always stop early),
    so the frontier never rises and every point on it was measured. Step-0 points (C = 0) are left out.
    """
    points = sorted((float(c), float(v)) for curve in curves for c, v in curve if c > 0 and math.isfinite(v))
    out: list[tuple[float, float]] = []
    for c, v in points:
        if not out or v < out[-1][1]:
            out.append((c, v))
    return out


def loss_at(frontier_points: Sequence[tuple[float, float]], compute: float) -> float:
    """The frontier's loss after `compute` (inf before its first point)."""
    best = math.inf
    for c, v in frontier_points:
        if c <= compute:
            best = min(best, v)
    return best


def first_compute_below(curve: Sequence[tuple[float, float]], loss: float) -> float | None:
    """The smallest compute at which `curve` was at or below `loss` (0.0 when its start already was)."""
    for c, v in sorted(curve):
        if v <= loss:
            return float(c)
    return None


@dataclass(frozen=True)
class Bound:
    """'From scratch, `max_compute` FLOPs reached `scratch_loss`; the fine-tune was there after `finetune_compute`.'"""

    max_compute: float  # the largest compute the frontier measured
    scratch_loss: float  # the frontier's loss there
    finetune_compute: float | None  # first compute at which the fine-tune was at or below that loss
    ratio: float | None  # max_compute / finetune_compute: scratch needs MORE than this (None: not reached)
    at_start: bool  # the fine-tune (the zero-shot model) was already below before any training


def measured_bound(frontier_points: Sequence[tuple[float, float]], finetune: Sequence[tuple[float, float]]) -> Bound:
    """A bound that claims only what was measured: the frontier's last point against the fine-tune's curve."""
    if not frontier_points:
        raise ValueError("the from-scratch frontier has no points")
    max_c, scratch_loss = frontier_points[-1]
    c = first_compute_below(finetune, scratch_loss)
    at_start = c == 0.0
    ratio = None if c is None or c == 0.0 else max_c / c
    return Bound(max_compute=max_c, scratch_loss=scratch_loss, finetune_compute=c, ratio=ratio, at_start=at_start)


@dataclass(frozen=True)
class Extrapolation:
    """Where a power law fitted to the frontier predicts `target` loss, read no further than the limit."""

    target: float
    limit: float  # MAX_EXTRAPOLATION x the largest measured compute
    compute: float | None  # the central fit's estimate; None when it lies beyond `limit` (or never)
    low: float | None  # the range over refits (None: some refit does not reach the target within the limit)
    high: float | None
    fit: Fit | None
    refits: int


def _reach(fit: Fit, target: float, limit: float) -> float | None:
    c = compute_to_reach(fit, target)
    return c if c is not None and c <= limit else None


def extrapolate(frontier_points: Sequence[tuple[float, float]], target: float, *, resamples: int = 200,
                seed: int = 0) -> Extrapolation:
    """Fit the frontier, estimate the compute to reach `target`, with a range from refits.

    The refits: the fit without the earliest point, without the two earliest, and on `resamples` bootstrap
    resamples of the points. An estimate past MAX_EXTRAPOLATION x the last measured compute is not given:
    the result then says only that the target lies beyond that limit.
    """
    c = np.array([p[0] for p in frontier_points], dtype=float)
    y = np.array([p[1] for p in frontier_points], dtype=float)
    limit = MAX_EXTRAPOLATION * float(c.max()) if len(c) else 0.0
    try:
        central = fit_power_law(c, y)
    except ValueError:
        return Extrapolation(target, limit, None, None, None, None, 0)
    estimates: list[float | None] = []
    rng = np.random.default_rng(seed)
    subsets = [np.arange(k, len(c)) for k in (1, 2)]
    subsets += [np.sort(rng.choice(len(c), size=len(c), replace=True)) for _ in range(resamples)]
    for idx in subsets:
        try:
            estimates.append(_reach(fit_power_law(c[idx], y[idx]), target, limit))
        except ValueError:
            continue  # too few distinct points in this resample
    reached = [e for e in estimates if e is not None]
    all_reach = len(reached) == len(estimates) and reached
    return Extrapolation(
        target=target, limit=limit, compute=_reach(central, target, limit),
        low=float(np.percentile(reached, 5)) if all_reach else None,
        high=float(np.percentile(reached, 95)) if all_reach else None,
        fit=central, refits=len(estimates),
    )
