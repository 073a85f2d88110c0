"""The training bench's report: MFU against the peak of each variant's precision, speedups, goals, table."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

from transferlm.lm.cpu_probe import KERNEL_ENV

TRAINERS = ("trainer_fp32", "trainer_bf16")


def build_report(results: dict, peaks: dict, figures: dict, settings: dict, machine: dict,
                 variants: dict, goals: dict, not_run: dict | None = None) -> dict:
    """metrics/bench_train.json: every variant's figures plus the headline of the default path.

    `not_run`: the variants that gave no figures, each with its status (skipped, timed_out or failed)
    and the reason.
    """
    for name, row in results.items():
        lora = variants[name].get("method") == "lora"
        per_token = figures["flops_per_token_lora" if lora else "flops_per_token"]
        # Against the peak of the precision this variant ran in: an fp32 run measured against the bf16
        # peak reads too high on a CPU where bf16 is slow, and too low where it is fast.
        precision = row.get("precision", "bf16")
        row["mfu"] = round(row["tokens_per_s"] * per_token / (peaks[precision] * 1e9), 4)
        ceiling = figures.get("model_matmul_ceiling_gflops", {}).get(precision)
        if ceiling:  # the same FLOP rate against the model's own matmuls timed alone (see the bench)
            row["of_model_matmul_rate"] = round(row["tokens_per_s"] * per_token / (ceiling * 1e9), 4)
        for baseline in TRAINERS:
            if baseline in results:
                row[f"speedup_vs_{baseline}"] = round(row["tokens_per_s"] / results[baseline]["tokens_per_s"], 3)

    report: dict = {}
    ours = results.get("transferlm")
    trainers = [results[t] for t in TRAINERS if t in results]
    if ours:
        headline = ("tokens_per_s", "precision", "speedup_vs_trainer_fp32", "speedup_vs_trainer_bf16", "mfu",
                    "peak_rss_mb")
        report.update({key: ours[key] for key in headline if key in ours})
    if ours and trainers:
        best = max(trainers, key=lambda row: row["tokens_per_s"])
        speedup = ours["tokens_per_s"] / best["tokens_per_s"]
        paired = round_speedups(ours, trainers)
        if paired:  # rows measured minutes apart drift apart; a round's rows are the closest in time
            speedup = median(paired)
        ceiling = figures.get("model_matmul_ceiling_gflops", {}).get(ours["precision"])
        report["goals"] = {
            "speedup_vs_best_trainer": round(speedup, 3),
            # What a step of nothing but this model's matmuls, at their rate timed alone, would reach against
            # the better Trainer: where this is near the goal, the goal is out of reach in practice.
            "speedup_bound_model_matmuls": round(ceiling * 1e9 / figures["flops_per_token"] / best["tokens_per_s"], 3)
            if ceiling else None,
            "speedup_vs_best_trainer_rounds": [round(x, 3) for x in paired],
            "speedup_goal": goals["speedup_vs_best_trainer"],
            "mfu_goal": goals["mfu"],
            # The MFU a step of nothing but this model's matmuls would reach: an upper bound on "mfu".
            "mfu_bound_model_matmuls": round(ceiling / peaks[ours["precision"]], 3) if ceiling else None,
            "peak_rss_mb_of_best_trainer": best["peak_rss_mb"],
            "met": {
                "speedup": speedup >= goals["speedup_vs_best_trainer"],
                "mfu": ours["mfu"] >= goals["mfu"],
                "memory": ours["peak_rss_mb"] <= best["peak_rss_mb"],
            },
        }
    report.update({
        "variants": results,
        "not_run": not_run or {},
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
        **figures,
        "settings": settings,
        "machine": machine,
    })
    return report


def round_speedups(ours: dict, trainers: list[dict]) -> list[float]:
    """Round by round, our tokens/s over the better Trainer's in that same round ([] for one round)."""
    rounds = [row.get("tokens_per_s_rounds", []) for row in (ours, *trainers)]
    count = min(len(r) for r in rounds)
    if count < 2:
        return []
    return [rounds[0][i] / max(r[i] for r in rounds[1:]) for i in range(count)]


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def print_table(report: dict, formula: str) -> None:
    peaks, machine = report["matmul_peak_gflops"], report["machine"]
    kernels = [f"{k} {machine[k]}" for k in ("bf16_flags", *KERNEL_ENV) if machine.get(k)]
    print(f"\n{machine['device']}, {machine['cpus']} CPUs, torch {machine['torch']}"
          + (f" ({'; '.join(kernels)})" if kernels else ""))
    sizes = report.get("matmul_peak_sizes", {})
    print("matmul peak (square, best of reps): " + ", ".join(
        f"{precision} {gflops:.0f} GFLOP/s"
        + (f" (sizes {sizes[precision][0]}-{sizes[precision][-1]})" if sizes.get(precision) else "")
        for precision, gflops in peaks.items()))
    probe = report.get("precision_probe")
    if probe:
        print(f"precision probe ({probe['source']}): bf16 {probe['bf16_gflops']:g} GFLOP/s, "
              f"fp32 {probe['fp32_gflops']:g} on one linear layer's matmuls")
    for precision, reason in report.get("skipped_precisions", {}).items():
        print(f"{precision} variants skipped: {reason}")
    ceilings = report.get("model_matmul_ceiling_gflops")
    if ceilings:
        print("the model's own matmuls timed alone: "
              + ", ".join(f"{precision} {gflops:.0f} GFLOP/s" for precision, gflops in ceilings.items())
              + " (\"of mm\": the achieved rate against these)")
    for precision, reason in report.get("model_matmul_ceiling_skipped", {}).items():
        print(f"the model's matmuls in {precision} not timed: {reason}")
    print(f"{formula}\n{report['flops_per_token'] / 1e6:.0f} MFLOP/token here; "
          "MFU against the peak of the precision each variant ran in")
    print(f"CPU idle before/after: {machine['cpu_idle_before']:.0%}/{machine.get('cpu_idle_after', 0):.0%} "
          f"(100% = nothing else running); load average {machine['loadavg_before']} -> "
          f"{machine.get('loadavg_after')}\n")
    gpu = any("peak_gpu_mb" in row for row in report["variants"].values())
    header = (f"{'variant':<22}{'prec':>6}{'tokens/s':>10}{'x tr.fp32':>11}{'x tr.bf16':>11}{'MFU':>7}{'of mm':>7}"
              f"{'peak RSS MB':>13}" + (f"{'peak GPU MB':>13}" if gpu else "") + f"{'step s':>8}")
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for name, row in report["variants"].items():
        print(f"{name:<22}{row.get('precision', '?'):>6}{row['tokens_per_s']:>10.0f}"
              f"{row.get('speedup_vs_trainer_fp32') or nan:>11.2f}{row.get('speedup_vs_trainer_bf16') or nan:>11.2f}"
              f"{row['mfu']:>7.0%}{row.get('of_model_matmul_rate', nan):>7.0%}{row['peak_rss_mb']:>13}"
              + (f"{row.get('peak_gpu_mb', ''):>13}" if gpu else "") + f"{row['step_seconds']:>8.2f}")
    for name, row in report.get("not_run", {}).items():
        when = f" (round {row['round']})" if row.get("round") else ""
        what = row["reason"] if row["status"] == "timed_out" else f"{row['status']}: {row['reason']}"
        print(f"{name:<22}{row.get('precision', '?'):>6}  {what}{when}")
    spread = {name: row["tokens_per_s_rounds"] for name, row in report["variants"].items()
              if "tokens_per_s_rounds" in row}
    if spread:
        print("\ntokens/s of each round (each row above is its median round):")
        for name, values in spread.items():
            print(f"  {name:<22}{' '.join(f'{v:.0f}' for v in values)}")
    goals = report.get("goals")
    if goals:
        met = goals["met"]
        paired = goals.get("speedup_vs_best_trainer_rounds")
        print(f"\ngoals (default path vs the better Trainer): speed {goals['speedup_vs_best_trainer']:.2f}x "
              + (f"(median of the rounds' {', '.join(f'{x:.2f}' for x in paired)}) " if paired else "")
              + f"(>= {goals['speedup_goal']}x: {'met' if met['speedup'] else 'NOT met'}"
              + (f"; a step of only this model's matmuls would be {goals['speedup_bound_model_matmuls']:.2f}x"
                 if goals.get("speedup_bound_model_matmuls") else "") + "), "
              f"MFU {report['mfu']:.0%} (>= {goals['mfu_goal']:.0%}: {'met' if met['mfu'] else 'NOT met'}"
              + (f"; a step of only this model's matmuls would reach {goals['mfu_bound_model_matmuls']:.0%}"
                 if goals.get("mfu_bound_model_matmuls") else "") + "), "
              f"peak RSS {report['peak_rss_mb']} MB vs {goals['peak_rss_mb_of_best_trainer']} "
              f"({'met' if met['memory'] else 'NOT met'})")
    if report.get("variants", {}).get("transferlm", {}).get("precision_reason"):
        print(f"precision auto: {report['variants']['transferlm']['precision_reason']}")
