"""The training bench's report: MFU against each precision's own peak, and the speed goal paired by round."""



from bench_report import build_report
from train_throughput import median_round

VARIANTS = {"trainer_fp32": {}, "trainer_bf16": {}, "transferlm": {}}
GOALS = {"speedup_vs_best_trainer": 1.4, "mfu": 0.6}
FIGURES = {"flops_per_token": 1e9, "model_matmul_ceiling_gflops": {"bf16": 500.0, "fp32": 100.0}}


def _row(precision: str, rounds: list[float]) -> dict:
    """A bench row as train_throughput.py makes it from its rounds."""
    return {**median_round([{"tokens_per_s": t, "peak_rss_mb": 4000} for t in rounds]), "precision": precision}


def _report(results: dict) -> dict:
    return build_report(results, {"bf16": 1000.0, "fp32": 200.0}, FIGURES, {}, {}, VARIANTS, GOALS)


def test_speed_goal_pairs_each_round_with_the_better_trainer_of_that_round():
    # The Trainer's round 3 ran in a slow spell: the rows' medians (150 / 100) would say 1.5x, but round
    # by round this loop was 1.3x, 1.3x and 2.5x the better Trainer of that round: a median of 1.3x.
    results = {"trainer_fp32": _row("fp32", [50.0, 40.0, 30.0]),
               "trainer_bf16": _row("bf16", [100.0, 200.0, 60.0]),
               "transferlm": _row("bf16", [130.0, 260.0, 150.0])}
    goals = _report(results)["goals"]
    assert goals["speedup_vs_best_trainer_rounds"] == [1.3, 1.3, 2.5]
    assert goals["speedup_vs_best_trainer"] == 1.3
    assert goals["met"]["speedup"] is False


def test_mfu_is_against_the_peak_of_the_precision_each_variant_ran_in():
    results = {"trainer_fp32": {"precision": "fp32", "tokens_per_s": 100.0, "peak_rss_mb": 5000},
               "trainer_bf16": {"precision": "bf16", "tokens_per_s": 100.0, "peak_rss_mb": 4000},
               "transferlm": {"precision": "bf16", "tokens_per_s": 150.0, "peak_rss_mb": 3900}}
    report = _report(results)
    assert report["variants"]["trainer_fp32"]["mfu"] == 0.5  # 100 GFLOP/s of fp32's 200
    assert report["variants"]["trainer_bf16"]["mfu"] == 0.1  # 100 of bf16's 1000
    goals = report["goals"]
    assert goals["speedup_vs_best_trainer"] == 1.5 and goals["speedup_vs_best_trainer_rounds"] == []
    assert goals["met"] == {"speedup": True, "mfu": False, "memory": True}
    assert goals["mfu_bound_model_matmuls"] == 0.5
    # bf16's model matmuls run at 500 GFLOP/s: 500 tokens/s at 1 GFLOP a token, 5x the better Trainer's 100.
    assert goals["speedup_bound_model_matmuls"] == 5.0
