"""What pretraining buys, from measured runs: the from-scratch frontier against the fine-tune (compute
saved), the spread over seeds, and the data-fraction runs (effective data transferred).

Every ratio here is either measured (both losses were reached in runs) or a bound that says so ("more
than"): the frontier's last point is the most compute any scratch run spent, and nothing is claimed
beyond it except by `scaling.extrapolate`, which refuses to read a fit further than 30x past it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

from transferlm.frontier import scaling
from transferlm.study.halving import seed_stats

# The base model's own pretraining, for scale: 6 x parameters x pretraining tokens (Kaplan et al. 2020).
PRETRAINING = {
    "smollm2-135m-instruct": {
        "parameters": 134_515_008,
        "tokens": 2e12,
        "source": "SmolLM2 model card and paper (Allal et al. 2025, arXiv:2502.02737): 135M trained on 2T tokens",
    },
}


def pretraining_compute(base: str) -> dict | None:
    known = PRETRAINING.get(base) or PRETRAINING.get(base.lower().split("/")[-1])
    if not known:
        return None
    return {**known, "flops": 6.0 * known["parameters"] * known["tokens"]}


def curve_points(rows: list[dict]) -> list[tuple[float, float]]:
    return [(float(r["flops"]), float(r["val_loss"])) for r in rows]


def compute_saved(scratch_curves: list[list[dict]], finetune_curve: list[dict], finetune_flops: float) -> dict:
    """The measured bound and the bounded extrapolation, both against the fine-tune."""
    front = scaling.frontier([curve_points(c) for c in scratch_curves])
    ft = curve_points(finetune_curve)
    bound = scaling.measured_bound(front, ft)
    final_loss = ft[-1][1]
    max_c = max(c for curve in scratch_curves for c, _ in curve_points(curve))  # the most any scratch run spent
    beyond = front[-1][1] > final_loss  # the frontier never reached the fine-tune's final loss
    extra = scaling.extrapolate(front, final_loss) if beyond else None
    return {
        "frontier": [{"flops": c, "val_loss": v} for c, v in front],
        "bound": dataclasses.asdict(bound),
        "finetune_flops": finetune_flops,
        "finetune_final_loss": final_loss,
        "scratch_max_flops": max_c,
        "scratch_max_over_finetune": max_c / finetune_flops,
        # Scratch never reached the fine-tune's final loss within max_c: it needs more than this many
        # times the fine-tune's compute (None when it did reach it).
        "final_loss_ratio_lower_bound": max_c / finetune_flops if beyond else None,
        "final_loss_reached_at": None if beyond else scaling.first_compute_below(front, final_loss),
        "extrapolation": None if extra is None else {
            "target": extra.target, "limit_flops": extra.limit,
            "limit_over_finetune": extra.limit / finetune_flops,
            "compute": extra.compute, "low": extra.low, "high": extra.high, "refits": extra.refits,
            "fit": extra.fit.describe() if extra.fit else None, "r2": extra.fit.r2 if extra.fit else None,
            "points": extra.fit.points if extra.fit else 0,
        },
    }


def data_needed(scratch: Sequence[tuple[float, float]], loss: float) -> dict:
    """How much training data scratch needs to reach `loss`, from its (data, best loss) points.

    Interpolated (linear in log data) between the two measured points that bracket `loss`; a bound where
    none do: more than the most data measured when scratch never got that low, at most the least data
    measured when it was already there. Never extrapolated.
    """
    points = sorted((d, v) for d, v in scratch if v is not None and math.isfinite(v))
    if not points:
        return {"tokens": None, "more_than": None, "at_most": None}
    if points[0][1] <= loss:
        return {"tokens": None, "more_than": None, "at_most": points[0][0]}
    for (d0, v0), (d1, v1) in itertools.pairwise(points):
        if v1 <= loss < v0:
            t = (v0 - loss) / (v0 - v1)
            return {"tokens": math.exp(math.log(d0) + t * (math.log(d1) - math.log(d0))), "more_than": None,
                    "at_most": None}
    return {"tokens": None, "more_than": points[-1][0], "at_most": None}


def data_efficiency(finetune: dict[float, dict], scratch: dict[float, dict]) -> list[dict]:
    """Per fraction: the fine-tune's best held-out loss with that much data, and how much data scratch needs
    for it (Hernandez et al. 2021: effective data transferred D_T = D_E - D_F).

    `finetune` / `scratch`: fraction -> {"loss": best held-out loss (early-stopped), "tokens": training
    tokens available}. Scratch's points are its best losses on each share, so the curve is each model
    trained to its best, not a fixed step count.
    """
    curve = [(m["tokens"], m["loss"]) for m in scratch.values()]
    rows = []
    for fraction, ft in sorted(finetune.items()):
        d_f, need = ft["tokens"], data_needed(curve, ft["loss"])
        rows.append({
            "fraction": fraction,
            "finetune_tokens_available": d_f,
            "finetune_loss": ft["loss"],
            "scratch_loss_same_data": scratch.get(fraction, {}).get("loss"),
            "scratch_tokens_needed": need["tokens"],
            "scratch_tokens_needed_more_than": need["more_than"],
            "scratch_tokens_needed_at_most": need["at_most"],
            "data_multiplier": need["tokens"] / d_f if need["tokens"] else None,
            "data_multiplier_more_than": need["more_than"] / d_f if need["more_than"] else None,
            "data_multiplier_at_most": need["at_most"] / d_f if need["at_most"] else None,
            "effective_data_transferred": need["tokens"] - d_f if need["tokens"] else None,
        })
    return rows


def epochs_summary(metrics: dict, val_curve: list[dict], block: int) -> dict:
    """One multi-epoch run: held-out loss after each epoch, the best epoch, and how far it overfit past it.

    An epoch is the run's training blocks seen once (tokens seen / tokens available: batches run on across
    epoch ends, so a count can be fractional)."""
    available = metrics["train_blocks"] * block
    rows = [{"epoch": round(r["tokens"] / available, 3), "val_loss": r["val_loss"], "seconds": r["seconds"]}
            for r in val_curve]
    finite = [r for r in rows if math.isfinite(r["val_loss"])]
    best = min(finite, key=lambda r: r["val_loss"]) if finite else None
    last = rows[-1] if rows else None
    return {
        "epochs_run": last["epoch"] if last else 0,
        "best_epoch": best["epoch"] if best else None,
        "best_loss": best["val_loss"] if best else None,
        "last_loss": last["val_loss"] if last else None,
        "overfit": (last["val_loss"] - best["val_loss"]) if best and last else None,
        "stopped_early": metrics["stopped_early"],
        "curve": rows,
    }


def time_to_pass(finetune_curve: list[dict], loss: float) -> float | None:
    """Wall-clock seconds after which the fine-tune's held-out loss was first at or below `loss`."""
    return next((r["seconds"] for r in finetune_curve if r["val_loss"] <= loss), None)


def spread(runs: list[dict]) -> dict:
    return {**seed_stats([r["final_val_loss"] if r["final_val_loss"] is not None else math.nan for r in runs]),
            "seeds_used": [r["seed"] for r in runs]}
