"""The optimizer x learning-rate study: successive halving over the grid, seeds for the finalists,
and the summary that ranks them and recommends the fine-tune's optimizer and lr.

Successive halving (Jamieson & Talwalkar 2016; Li et al. 2017, "Hyperband"): every grid point first
runs a short budget; each round keeps the best 1/eta of the runs and runs them again from the start
with eta x the steps, until the last round runs the main fine-tune's step count. Rankings use the
*final* held-out loss of each run. A run that ends above the loss it started from is "worse than no
training"; a run stopped for a NaN or runaway loss is "diverged"; both rank below every run that
improved, and neither is ever shown as its step-0 loss. The last round's runs are repeated with more
seeds, and differences smaller than the seed spread are reported as ties.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from transferlm.core import artifacts
from transferlm.core.errors import InputError

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
    runs = [artifacts.run_metrics(f.parent) for f in files]
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

