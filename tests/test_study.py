"""The study's logic on synthetic runs: halving schedule and promotion, labels, ties, the lr range test;
and the from-scratch frontier: bounds that claim only what was measured, extrapolation refused past 30x."""

import math

import numpy as np
import pytest

from transferlm import scaling, study, transfer


def run(opt, lr, loss, diverged=False, seed=1337, steps=4):
    return {"optimizer": opt, "lr": lr, "final_val_loss": loss, "diverged": diverged, "seed": seed,
            "steps": steps, "seconds": 1.0, "seconds_per_step": 0.25}


def test_rung_steps_end_at_the_main_budget():
    assert study.rung_steps(30, 3, 3) == [3, 10, 30]
    assert study.rung_steps(36, 3, 3) == [4, 12, 36]
    assert study.rung_steps(4, 2, 2) == [2, 4]
    assert study.rung_steps(5, 1, 3) == [5]


def test_labels_worse_and_diverged_never_take_their_start_loss():
    start = 4.0
    assert study.status(run("a", 1, 3.5), start) == study.IMPROVED
    assert study.status(run("a", 1, 4.5), start) == study.WORSE
    assert study.status(run("a", 1, math.nan, diverged=True), start) == study.DIVERGED
    assert study.status(run("a", 1, None), start) == study.DIVERGED


def test_promotion_keeps_the_best_third_by_final_loss():
    runs = [run("adamw", lr, loss) for lr, loss in [(1e-4, 3.6), (1e-3, 3.4), (1e-2, 4.5), (1e-1, math.nan)]]
    runs += [run("sgd", lr, loss) for lr, loss in [(1e-4, 3.95), (1e-3, 3.8), (1e-2, 3.5)]]
    runs[3]["diverged"] = True
    promoted = study.promote(runs, eta=3, start_loss=4.0)
    assert [(m["optimizer"], m["lr"]) for m in promoted] == [("adamw", 1e-3), ("sgd", 1e-2)]  # round(7/3) = 2
    # Runs that got worse or diverged are never promoted while any run improved.
    assert all(study.status(m, 4.0) == study.IMPROVED for m in study.promote(runs, eta=2, start_loss=4.0))


def test_finalists_are_the_last_round_or_with_one_rung_the_best_of_round_0():
    round0 = [run("adamw", lr, loss) for lr, loss in [(1e-4, 3.6), (1e-3, 3.4), (1e-2, 4.5)]]
    round0 += [run("sgd", lr, loss) for lr, loss in [(1e-3, 3.8), (1e-2, 3.5), (1e-1, 3.9)]]
    # No halving round: the seeds repeat round 0's best 1/eta (eta 3: 2 of 6), not the whole grid.
    assert study.finalists(round0, rungs=1, eta=3, start_loss=4.0) == [
        {"optimizer": "adamw", "lr": 1e-3, "steps": 4}, {"optimizer": "sgd", "lr": 1e-2, "steps": 4}]
    assert len(study.finalists(round0, rungs=1, eta=2, start_loss=4.0)) == 3
    # After halving, every run of the last round, whatever eta says.
    last = [run("adamw", 1e-3, 3.3, steps=12), run("sgd", 1e-2, 3.45, steps=12)]
    assert study.finalists(last, rungs=2, eta=3, start_loss=4.0) == [
        {"optimizer": "adamw", "lr": 1e-3, "steps": 12}, {"optimizer": "sgd", "lr": 1e-2, "steps": 12}]


def test_ties_come_from_the_seed_spread():
    stats = {
        "a": study.seed_stats([3.40, 3.42, 3.44]),  # mean 3.42, std 0.02
        "b": study.seed_stats([3.43, 3.45, 3.47]),  # 0.03 behind: within its std of 0.02? no -> not a tie
        "c": study.seed_stats([3.30, 3.45, 3.60]),  # mean 3.45, std 0.15: the spread covers the gap
    }
    assert stats["a"]["mean"] == pytest.approx(3.42) and stats["a"]["std"] == pytest.approx(0.02)
    assert study.ties_with_best(stats) == ["c"]


def test_summary_labels_and_recommends_from_seeds():
    start = 4.0
    round0 = [run("adamw", 1e-4, 3.7), run("adamw", 1e-1, math.nan, diverged=True), run("sgd", 1e-2, 3.9),
              run("sgd", 1e-5, 4.01)]
    last = [run("adamw", 1e-4, 3.5, steps=12), run("sgd", 1e-2, 3.6, steps=12)]
    seeds = [run("adamw", 1e-4, 3.52, seed=1, steps=12), run("sgd", 1e-2, 3.45, seed=1, steps=12)]
    summary = study.summarize(round0, [last], seeds, {}, start, eta=2)
    assert summary["recommended"]["optimizer"] == "adamw"  # mean 3.51 vs 3.525
    assert summary["ties_with_best"] == ["sgd-0.01"]  # sgd's spread (0.106) covers the 0.015 gap
    adamw, sgd = summary["optimizers"]["adamw"], summary["optimizers"]["sgd"]
    assert adamw["diverges_at"] == [1e-1] and adamw["improves_at"] == [1e-4]
    assert sgd["worse_at"] == [1e-5] and sgd["best_lr"] == 1e-2 and sgd["best_lr_from"] == "round 1"
    grid = {(r["optimizer"], r["lr"]): r for r in summary["grid"]}
    assert grid[("adamw", 1e-1)]["status"] == study.DIVERGED
    assert grid[("sgd", 1e-5)]["status"] == study.WORSE and grid[("sgd", 1e-5)]["final_val_loss"] == 4.01


def test_lr_find_suggests_the_steepest_descent():
    lrs = list(np.geomspace(1e-6, 1.0, 13))
    # Flat, then falling fastest around 1e-3, a minimum at 1e-2, then blowing up.
    losses = [5.0, 5.0, 5.0, 4.99, 4.9, 4.5, 3.5, 3.0, 2.9, 3.5, 6.0, 20.0, math.inf]
    found = study.lr_find_suggestion(lrs, losses, beta=0.0)
    assert found["steepest"] == pytest.approx(lrs[5])  # 4.5 -> 3.5 is the steepest step
    assert found["min_over_10"] == pytest.approx(lrs[8] / 10)


# ------------------------------------------------------------------------------------ frontier and bounds


def test_frontier_is_the_lower_envelope_of_measured_points():
    small = [(0.0, 10.8), (1.0, 7.0), (2.0, 6.0), (4.0, 5.8)]
    large = [(1.0, 8.0), (2.0, 6.5), (4.0, 5.5), (8.0, 5.0)]
    assert scaling.frontier([small, large]) == [(1.0, 7.0), (2.0, 6.0), (4.0, 5.5), (8.0, 5.0)]


def test_a_known_power_law_gives_back_its_exponent():
    c = np.geomspace(1e12, 1e14, 8)
    fit = scaling.fit_power_law(c, 50.0 * c ** -0.07)
    assert fit.b == pytest.approx(0.07, rel=1e-6)


def test_bound_claims_only_what_was_measured():
    front = [(1.0, 7.0), (3.0, 6.0)]
    finetune = [(0.0, 6.5), (0.5, 5.9), (1.0, 5.0)]
    bound = scaling.measured_bound(front, finetune)
    # Scratch reached 6.0 after 3 units; the fine-tune was at or below 6.0 after 0.5: more than 6x, measured.
    assert bound.finetune_compute == 0.5 and bound.ratio == pytest.approx(6.0) and not bound.at_start
    at_start = scaling.measured_bound(front, [(0.0, 4.0), (1.0, 3.5)])
    assert at_start.at_start and at_start.ratio is None  # no finite ratio is claimed
    never = scaling.measured_bound(front, [(0.0, 6.5), (1.0, 6.2)])
    assert never.finetune_compute is None and never.ratio is None


def test_extrapolation_past_30x_is_refused():
    c = np.geomspace(1e12, 1e13, 6)
    loss = 40.0 * c ** -0.05
    points = list(zip(c, loss, strict=True))
    within = 40.0 * (1e13 * 10) ** -0.05  # reached at 10x the last point
    beyond = 40.0 * (1e13 * 100) ** -0.05  # reached at 100x: past the limit
    near = scaling.extrapolate(points, within, resamples=50)
    assert near.compute == pytest.approx(1e14, rel=1e-3) and near.limit == pytest.approx(3e14)
    assert near.low <= near.compute <= near.high
    far = scaling.extrapolate(points, beyond, resamples=50)
    assert far.compute is None and far.low is None and far.high is None


def test_compute_saved_and_data_efficiency_bounds():
    scratch = [[{"flops": 1.0, "val_loss": 7.0}, {"flops": 3.0, "val_loss": 6.0}]]
    finetune = [{"flops": 0.0, "val_loss": 4.2}, {"flops": 1.0, "val_loss": 3.5}]
    saved = transfer.compute_saved(scratch, finetune, finetune_flops=1.0)
    assert saved["bound"]["at_start"] and saved["final_loss_ratio_lower_bound"] == 3.0
    rows = transfer.data_efficiency(
        {0.1: {"final_val_loss": 4.0, "train_tokens_available": 100},
         1.0: {"final_val_loss": 3.5, "train_tokens_available": 1000}},
        {0.1: {"final_val_loss": 6.5, "train_tokens_available": 100},
         1.0: {"final_val_loss": 3.9, "train_tokens_available": 1000}},
    )
    small, full = rows
    assert small["scratch_tokens_needed"] == 1000 and small["data_multiplier"] == 10.0  # measured
    assert full["scratch_tokens_needed"] is None and full["data_multiplier_more_than"] == 1.0  # only a bound
