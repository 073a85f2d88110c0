"""bench/lever_ab.py: each setting switches exactly its lever, and the script runs on a tiny model."""

import subprocess
import sys

import pytest
import torch
from lever_ab import LEVERS, levers

from helpers import ROOT
from transferlm.lm import models, speed


def _fused(model) -> bool:
    return any("forward" in vars(module) for module in model.modules())


def test_each_setting_turns_off_only_its_lever_and_restores_the_model(tiny_model_dir):
    model = models.load_pretrained(tiny_model_dir)
    tuned = speed.attention_implementation(torch.device("cpu"), 32, "sdpa", "bf16")
    assert tuned == speed.SHORT_ATTENTION
    with levers(model, None, tuned) as loss:
        assert _fused(model) and loss.fused and model.config._attn_implementation == tuned
    assert not _fused(model)
    with levers(model, "fused_layers", tuned) as loss:
        assert not _fused(model) and loss.fused and model.config._attn_implementation == tuned
    with levers(model, "fused_loss", tuned) as loss:
        assert _fused(model) and not loss.fused and model.config._attn_implementation == tuned
    with levers(model, "short_attention", tuned) as loss:
        assert _fused(model) and loss.fused and model.config._attn_implementation == "sdpa"
    assert not _fused(model)


@pytest.mark.parametrize("lever", LEVERS)
def test_the_script_prints_the_paired_ratio(lever, tiny_model_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "bench/lever_ab.py"), "--lever", lever, "--pairs", "3",
                           "--warmup", "1", "--base", str(tiny_model_dir), "--batch-size", "2", "--block-size", "16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(row for row in proc.stdout.splitlines() if row.startswith("step time on/off"))
    assert float(line.split("median ")[1].split(",")[0]) > 0
