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
