"""The optimizer x learning-rate study: successive halving over the grid, seeds for the finalists, lr
range tests, and the summary that ranks them and recommends the fine-tune's optimizer and lr.

Successive halving (Jamieson & Talwalkar 2016; Li et al. 2017, "Hyperband"): every grid point first
runs a short budget; each round keeps the best 1/eta of the runs and runs them again from the start
with eta x the steps, until the last round runs the main fine-tune's step count. Rankings use the
*final* held-out loss of each run. A run that ends above the loss it started from is "worse than no
training"; a run stopped for a NaN or runaway loss is "diverged"; both rank below every run that
improved, and neither is ever shown as its step-0 loss. The last round's runs are repeated with more
seeds, and differences smaller than the seed spread are reported as ties.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from transferlm.errors import InputError

IMPROVED, WORSE, DIVERGED = "improved", "worse than no training", "diverged"


def rung_steps(max_steps: int, rungs: int, eta: int) -> list[int]:
    """Steps of each round, ending at max_steps: e.g. 36 steps, 3 rounds, eta 3 -> [4, 12, 36]."""
    return [max(1, round(max_steps / eta ** (rungs - 1 - k))) for k in range(rungs)]


def status(metrics: dict, start_loss: float) -> str:
    final = metrics.get("final_val_loss")
    if metrics.get("diverged") or final is None or not math.isfinite(final):
        return DIVERGED
    return WORSE if final > start_loss else IMPROVED


def rank_key(metrics: dict, start_loss: float) -> tuple[int, float]:
    """Sort key: improved runs by final loss, then runs worse than no training, then diverged runs."""
    order = {IMPROVED: 0, WORSE: 1, DIVERGED: 2}[status(metrics, start_loss)]
    final = metrics.get("final_val_loss")
    return order, final if final is not None and math.isfinite(final) else math.inf


def promote(runs: Sequence[dict], eta: int, start_loss: float) -> list[dict]:
    """The best 1/eta of `runs` (at least one, rounded to nearest), best first; only runs that improved."""
    ranked = sorted(runs, key=lambda m: rank_key(m, start_loss))
    keep = max(1, round(len(runs) / eta))
    return [m for m in ranked[:keep] if status(m, start_loss) == IMPROVED] or ranked[:1]


def finalists(last_round: Sequence[dict], rungs: int, eta: int, start_loss: float) -> list[dict]:
    """The grid points the seed runs repeat: every run of the last halving round, or with one rung (no
    halving) round 0's best 1/eta, since repeating all of round 0 would cost as much as the grid itself."""
    points = last_round if rungs > 1 else promote(last_round, eta, start_loss)
    return [{"optimizer": m["optimizer"], "lr": m["lr"], "steps": m["steps"]} for m in points]


def read_runs(folder: Path, names: Sequence[str] | None = None) -> list[dict]:
    """metrics.json of the run folders `names` below `folder` (default: every one, one level), by name.

    Pass the names where `folder` may hold runs of an older grid: DVC removes an output only when its
    stage reruns, so a grid point dropped from params leaves its folder behind.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: not found (run the stage that writes it first)")
    if names is None:
        files = sorted(folder.glob("*/metrics.json"))
    else:
        files = [folder / name / "metrics.json" for name in sorted(names)]
    missing = [str(f.parent) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not found (run the stage that writes it first)")
    runs = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if not runs:
        raise InputError(f"{folder}: no runs in it")
    return runs


# ---------------------------------------------------------------------------------------------- seeds


def seed_stats(losses: Sequence[float]) -> dict:
    """Mean, sample standard deviation, min and max of one configuration's final losses over seeds."""
    finite = [x for x in losses if math.isfinite(x)]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "seeds": len(losses)}
    return {
        "mean": statistics.fmean(finite),
        "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
        "min": min(finite),
        "max": max(finite),
        "seeds": len(losses),
    }


def ties_with_best(stats: dict[str, dict]) -> list[str]:
    """Configurations whose mean differs from the best mean by no more than the larger seed std of the two."""
    ranked = sorted(stats, key=lambda k: stats[k]["mean"])
    best = stats[ranked[0]]
    return [k for k in ranked[1:]
            if abs(stats[k]["mean"] - best["mean"]) <= max(stats[k]["std"], best["std"])]


# ------------------------------------------------------------------------------------------- lr range test


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


# ------------------------------------------------------------------------------------------ batch size


def loss_by(val_curve: Sequence[dict], seconds: float) -> float | None:
    """The last held-out loss a run had measured by `seconds` of its wall-clock (None before any)."""
    measured = [r["val_loss"] for r in val_curve if r["seconds"] <= seconds + 1e-9]
    return measured[-1] if measured else None


def batch_size_summary(runs: Sequence[dict], *, rule: str, base_batch: int, base_lr: float) -> dict:
    """Batch sizes at equal training tokens: each run's final held-out loss and wall-clock, the best at equal
    tokens (lowest final loss), and the best at equal time: the lowest loss measured by the time the
    quickest run had finished."""
    rows = [{"batch_size": m["batch_size"], "lr": m["lr"], "steps": m["steps"], "tokens": m["tokens"],
             "seconds": m["seconds"], "tokens_per_s": m["tokens_per_s"], "final_val_loss": m["final_val_loss"],
             "diverged": m["diverged"]} for m in runs]
    finite = [r for r in rows if r["final_val_loss"] is not None and math.isfinite(r["final_val_loss"])]
    equal_time = min(m["seconds"] for m in runs)
    at_time = {m["batch_size"]: loss_by(m["val_curve"], equal_time) for m in runs}
    timed = {b: v for b, v in at_time.items() if v is not None and math.isfinite(v)}
    return {
        "rule": rule, "base_batch_size": base_batch, "base_lr": base_lr, "runs": rows,
        "best_at_equal_tokens": min(finite, key=lambda r: r["final_val_loss"])["batch_size"] if finite else None,
        "equal_time_seconds": equal_time,
        "loss_at_equal_time": {str(b): v for b, v in at_time.items()},
        "best_at_equal_time": min(timed, key=timed.get) if timed else None,
    }


# ------------------------------------------------------------------------------------------- summary


def summarize(rung0: list[dict], rounds: list[list[dict]], seed_runs: list[dict], lr_finds: dict[str, dict],
              start_loss: float, eta: int) -> dict:
    """metrics/study.json: the grid, the halving rounds, the finalists over seeds, ties, the recommendation,
    and per optimizer its best lr, where it beats the zero-shot model, where it diverges, its speed."""
    def row(m: dict) -> dict:
        return {"optimizer": m["optimizer"], "lr": m["lr"], "seed": m["seed"], "steps": m["steps"],
                "final_val_loss": m["final_val_loss"], "status": status(m, start_loss), "seconds": m["seconds"],
                "seconds_per_step": m["seconds_per_step"]}

    last = rounds[-1] if rounds else promote(rung0, eta, start_loss)
    finalists: dict[str, dict] = {}
    for m in last:
        key = f"{m['optimizer']}-{m['lr']}"
        same = [s for s in seed_runs if s["optimizer"] == m["optimizer"] and s["lr"] == m["lr"]]
        losses = [m["final_val_loss"], *(s["final_val_loss"] for s in same)]
        losses = [x if x is not None else math.nan for x in losses]
        finalists[key] = {"optimizer": m["optimizer"], "lr": m["lr"], "steps": m["steps"], **seed_stats(losses),
                          "seed_values": [m["seed"], *(s["seed"] for s in same)], "losses": losses}
    ranked = sorted(finalists, key=lambda k: (math.isnan(finalists[k]["mean"]), finalists[k]["mean"]))
    best = finalists[ranked[0]]
    by_optimizer = {}
    for optimizer in dict.fromkeys(m["optimizer"] for m in rung0):
        mine = [m for m in rung0 if m["optimizer"] == optimizer]
        furthest = [m for r in rounds for m in r if m["optimizer"] == optimizer]
        deepest = max((r for r in range(len(rounds)) if any(m["optimizer"] == optimizer for m in rounds[r])),
                      default=None)
        pool = [m for m in rounds[deepest] if m["optimizer"] == optimizer] if deepest is not None else mine
        top = min(pool, key=lambda m: rank_key(m, start_loss))
        finder = lr_finds.get(optimizer, {})
        by_optimizer[optimizer] = {
            "best_lr": top["lr"],
            "best_lr_status": status(top, start_loss),
            "best_lr_from": f"round {deepest + 1}" if deepest is not None else "round 0",
            "best_lr_steps": top["steps"],
            "best_lr_loss": top["final_val_loss"],
            "improves_at": sorted(m["lr"] for m in mine if status(m, start_loss) == IMPROVED),
            "worse_at": sorted(m["lr"] for m in mine if status(m, start_loss) == WORSE),
            "diverges_at": sorted(m["lr"] for m in mine if status(m, start_loss) == DIVERGED),
            "round0_best_loss": min((m["final_val_loss"] for m in mine if status(m, start_loss) != DIVERGED),
                                    default=None),
            "seconds_per_step": statistics.median(m["seconds_per_step"] for m in mine),
            "rounds_reached": 0 if deepest is None else deepest + 1,
            "promoted_runs": len(furthest),
            "lr_find_suggestion": finder.get("valley"),
            "lr_find_steepest": finder.get("steepest"),
            "lr_find_min_over_10": finder.get("min_over_10"),
        }
    return {
        "start_loss": start_loss,
        "grid": [row(m) for m in rung0],
        "rounds": [[row(m) for m in r] for r in rounds],
        "finalists": finalists,
        "ties_with_best": ties_with_best({k: v for k, v in finalists.items() if not math.isnan(v["mean"])}),
        "recommended": {"optimizer": best["optimizer"], "lr": best["lr"], "mean": best["mean"], "std": best["std"],
                        "seeds": best["seed_values"]},
        "optimizers": by_optimizer,
    }

