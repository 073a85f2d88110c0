"""The lr range test read as fastai's lr_find reads it (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks"): one run whose lr rises exponentially each step; the smoothed loss against lr."""

from __future__ import annotations

import math
from collections.abc import Sequence

LR_FIND_BETA = 0.98  # fastai's AvgSmoothLoss
LR_FIND_BLOWUP = 4.0  # the test is over once the smoothed loss exceeds this x its best (fastai's stop_div)


def _longest_fall(values: Sequence[float]) -> tuple[int, int]:
    """(first, last) index of the longest strictly falling subsequence of `values` (quadratic: ~100 points)."""
    length, first = [1] * len(values), list(range(len(values)))
    for i in range(len(values)):
        for j in range(i):
            if values[i] < values[j] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    last = max(range(len(values)), key=lambda i: (length[i], -i))
    return first[last], last


def lr_find_suggestion(lrs: Sequence[float], losses: Sequence[float], beta: float = LR_FIND_BETA) -> dict:
    """Read an lr range test (Smith 2017; fastai's lr_find) from its per-step losses at exponentially rising lrs.

    As fastai does: the loss is smoothed by a debiased moving average (beta 0.98); the curve ends at the
    first NaN or where the smoothed loss exceeds 4x its best; its first tenth and last 5 points are left
    out. Suggestions: `valley`, the middle of the longest falling stretch of the smoothed loss (fastai's
    default); `steepest`, its steepest descent per log lr before its minimum; `min_over_10`, the minimum's
    lr / 10. The average lags the lr (it spans ~50 steps), which moves all three to higher lrs than the raw
    curve's; the valley's reading is tested against synthetic curves whose falling stretch is known.
    """
    smooth, avg = [], 0.0
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** (i + 1))  # debiased: the average of a constant is that constant
        if smooth and value > LR_FIND_BLOWUP * min(smooth):
            break
        smooth.append(value)
    result = {"valley": None, "steepest": None, "min_over_10": None, "smoothed": smooth, "steps": len(smooth)}
    lo, hi = len(smooth) // 10, len(smooth) - 5
    if hi - lo < 3:
        lo, hi = 0, len(smooth)
    if hi - lo < 3:
        return result
    window, at = smooth[lo:hi], [math.log(lr) for lr in lrs[lo:hi]]
    first, last = _longest_fall(window)
    result["valley"] = math.exp(at[first + (last - first) // 2])
    lowest = min(range(len(window)), key=window.__getitem__)
    slopes = [(window[i + 1] - window[i]) / (at[i + 1] - at[i]) for i in range(max(lowest, 1))]
    result["steepest"] = math.exp(at[min(range(len(slopes)), key=slopes.__getitem__)])
    result["min_over_10"] = math.exp(at[lowest]) / 10
    return result
