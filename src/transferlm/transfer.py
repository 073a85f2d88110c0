"""What pretraining buys, from measured runs: the from-scratch frontier against the fine-tune (compute
saved), the spread over seeds, and the data-fraction runs (effective data transferred).

Every ratio here is either measured (both losses were reached in runs) or a bound that says so ("more
than"): the frontier's last point is the most compute any scratch run spent, and nothing is claimed
beyond it except by `scaling.extrapolate`, which refuses to read a fit further than 30x past it.
"""

from __future__ import annotations

import dataclasses
import math

from transferlm import scaling
from transferlm.study import seed_stats

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


def data_efficiency(finetune: dict[float, dict], scratch: dict[float, dict]) -> list[dict]:
    """Per fraction: the fine-tune's loss with that much data, and how much data scratch needs for it.

    `finetune` / `scratch`: fraction -> run metrics (final_val_loss, train_blocks, tokens per block).
    D_E (Hernandez et al. 2021) is the smallest training set on which scratch reached the fine-tune's loss;
    when no scratch run did, only a bound is stated: more than the largest set scratch was given.
    """
    scratch_sorted = sorted(scratch.items())
    largest_data = max(m["train_tokens_available"] for m in scratch.values())
    rows = []
    for fraction, ft in sorted(finetune.items()):
        loss = ft["final_val_loss"]
        reached = [m["train_tokens_available"] for _, m in scratch_sorted
                   if m["final_val_loss"] is not None and math.isfinite(m["final_val_loss"])
                   and m["final_val_loss"] <= loss]
        d_f = ft["train_tokens_available"]
        d_e = min(reached) if reached else None
        rows.append({
            "fraction": fraction,
            "finetune_tokens_available": d_f,
            "finetune_loss": loss,
            "scratch_loss_same_data": scratch.get(fraction, {}).get("final_val_loss"),
            "scratch_tokens_needed": d_e,
            "scratch_tokens_needed_more_than": None if reached else largest_data,
            "data_multiplier": d_e / d_f if d_e else None,
            "data_multiplier_more_than": None if reached else largest_data / d_f,
            "effective_data_transferred": d_e - d_f if d_e else None,
        })
    return rows


def spread(runs: list[dict]) -> dict:
    return {**seed_stats([r["final_val_loss"] if r["final_val_loss"] is not None else math.nan for r in runs]),
            "seeds_used": [r["seed"] for r in runs]}
