"""The study's logic on synthetic runs: halving schedule and promotion, labels, ties, the lr range test;
and the from-scratch frontier: bounds that claim only what was measured, extrapolation refused past 30x."""

import math

import numpy as np
import pytest

from transferlm.frontier import savings as transfer
from transferlm.frontier import scaling
from transferlm.study import halving as study
from transferlm.study import lr_find


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


def _range_test(lrs, start=-5.0, bottom=-2.0):
    """A noise-free lr range test: flat at 4 until 10**start, falling linearly in log lr to its minimum at
    10**bottom, then blowing up. Its falling stretch is known: the valley's middle is 10**((start+bottom)/2)."""
    def loss(lr):
        x = math.log10(lr)
        if x < start:
            return 4.0
        return 4.0 - (x - start) * 1.2 / (bottom - start) if x < bottom else 2.8 + 6 * (x - bottom) ** 2
    return [loss(lr) for lr in lrs]


@pytest.mark.parametrize("seed", range(5))
def test_lr_find_valley_of_a_noisy_curve_lands_within_2x_of_the_known_valley(seed):
    lrs = list(np.geomspace(1e-6, 1.0, 100))
    noise = np.random.default_rng(seed).normal(0.0, 0.4, len(lrs))  # batch-to-batch noise as measured (0.3-0.5)
    found = lr_find.lr_find_suggestion(lrs, list(np.array(_range_test(lrs)) + noise))
    assert 10**-3.5 / 2 <= found["valley"] <= 10**-3.5 * 2


def test_lr_find_steepest_and_minimum_readings_without_smoothing():
    lrs = list(np.geomspace(1e-6, 1.0, 100))
    losses = _range_test(lrs, start=-4.0, bottom=-2.0)
    losses[45] -= 0.5  # one step that falls most steeply, inside the falling stretch
    found = lr_find.lr_find_suggestion(lrs, losses, beta=0.0)
    assert found["steepest"] == pytest.approx(lrs[44])  # the slope from step 44 to 45
    bottom = min(range(len(losses)), key=losses.__getitem__)
    assert found["min_over_10"] == pytest.approx(lrs[bottom] / 10)


def test_lr_find_stops_where_the_smoothed_loss_blows_up():
    lrs = list(np.geomspace(1e-6, 1.0, 100))
    losses = [3.0] * 60 + [50.0] * 39 + [math.nan]
    found = lr_find.lr_find_suggestion(lrs, losses, beta=0.5)
    # The first blown-up step lifts the smoothed loss to 26.5, past 4 x its best (3.0): the curve ends before it.
    assert found["steps"] == 60 and len(found["smoothed"]) == 60


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
        {0.1: {"loss": 4.0, "tokens": 100}, 1.0: {"loss": 3.5, "tokens": 1000}},
        {0.1: {"loss": 6.5, "tokens": 100}, 1.0: {"loss": 3.9, "tokens": 1000}},
    )
    small, full = rows
    # 4.0 lies between scratch's 6.5 (100 tokens) and 3.9 (1000): interpolated on log data, measured.
    assert small["scratch_tokens_needed"] == pytest.approx(100 * 10 ** (2.5 / 2.6))
    assert small["data_multiplier_more_than"] is None
    assert full["scratch_tokens_needed"] is None and full["data_multiplier_more_than"] == 1.0  # only a bound


def test_data_needed_interpolates_on_log_data_within_the_measured_range():
    # Scratch's best loss falls by 1 nat per 10x data: 6 at 1e3 tokens, 5 at 1e4, 4 at 1e5.
    curve = [(1e3, 6.0), (1e4, 5.0), (1e5, 4.0)]
    assert transfer.data_needed(curve, 4.5)["tokens"] == pytest.approx(10**4.5)
    assert transfer.data_needed(curve, 5.0)["tokens"] == pytest.approx(1e4)


def test_data_needed_outside_the_measured_range_is_a_bound_never_an_extrapolation():
    curve = [(1e3, 6.0), (1e4, 5.0), (1e5, 4.0)]
    beyond = transfer.data_needed(curve, 3.0)  # scratch never got this low
    assert beyond == {"tokens": None, "more_than": 1e5, "at_most": None}
    before = transfer.data_needed(curve, 7.0)  # scratch was already there with the least data measured
    assert before == {"tokens": None, "more_than": None, "at_most": 1e3}


def test_data_efficiency_states_the_interpolated_multiplier_and_the_bound():
    rows = transfer.data_efficiency(
        {0.001: {"loss": 4.5, "tokens": 1e3}, 1.0: {"loss": 3.0, "tokens": 1e6}},
        {0.001: {"loss": 6.0, "tokens": 1e3}, 0.01: {"loss": 5.0, "tokens": 1e4}, 1.0: {"loss": 4.0, "tokens": 1e6}},
    )
    small, full = rows
    # Scratch: 5.0 at 1e4 and 4.0 at 1e6 bracket 4.5: log-midpoint, 1e5 tokens, 100x the fine-tune's 1e3.
    assert small["scratch_tokens_needed"] == pytest.approx(1e5) and small["data_multiplier"] == pytest.approx(100)
    assert small["effective_data_transferred"] == pytest.approx(1e5 - 1e3)
    assert full["data_multiplier"] is None and full["data_multiplier_more_than"] == pytest.approx(1.0)
