"""The training loop on a tiny model: determinism, learning, optimizers, divergence, lr ramp, LoRA, saving."""

import dataclasses
import json

import pytest
import torch

from transferlm.core.curves import read_curve, series_path
from transferlm.core.errors import ParamError
from transferlm.core.params import OPTIMIZERS, Shape, TrainParams
from transferlm.lm import blocks as data
from transferlm.training.loop import Diverged, Run, train
from transferlm.training.optim import build_optimizer

TINY = TrainParams(max_steps=6, batch_size=4, warmup_steps=1, eval_every=3, save_every=0, optimizer="adamw",
                   lr=1e-3, precision="fp32", seed=0)


def _train(run, tiny_tokenized_dir, tiny_model_dir, tmp_path=None):
    heldout = data.heldout_blocks(tiny_tokenized_dir, 8, 0)
    return train(run, data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir, heldout=heldout,
                 checkpoint_dir=None if tmp_path is None else tmp_path / "ckpt")


def test_batch_order_covers_each_epoch_once_and_is_seeded():
    order = torch.cat([data.batch_indices(s, 4, 10, seed=1) for s in range(5)])  # 20 = two epochs
    assert sorted(order[:10].tolist()) == list(range(10))
    assert sorted(order[10:].tolist()) == list(range(10))
    assert torch.equal(order, torch.cat([data.batch_indices(s, 4, 10, seed=1) for s in range(5)]))
    assert not torch.equal(order, torch.cat([data.batch_indices(s, 4, 10, seed=2) for s in range(5)]))


def test_same_seed_same_losses(tiny_tokenized_dir, tiny_model_dir):
    _, a = _train(Run("a", TINY), tiny_tokenized_dir, tiny_model_dir)
    _, b = _train(Run("b", TINY), tiny_tokenized_dir, tiny_model_dir)
    assert [r["loss"] for r in a.train_curve] == pytest.approx([r["loss"] for r in b.train_curve], abs=1e-6)
    _, c = _train(Run("c", dataclasses.replace(TINY, seed=1)), tiny_tokenized_dir, tiny_model_dir)
    assert [r["loss"] for r in a.train_curve] != [r["loss"] for r in c.train_curve]


def test_training_lowers_heldout_loss(tiny_tokenized_dir, tiny_model_dir):
    cfg = dataclasses.replace(TINY, max_steps=30, eval_every=10, lr=3e-3)
    _, result = _train(Run("t", cfg), tiny_tokenized_dir, tiny_model_dir)
    m = result.metrics
    assert m["final_val_loss"] < m["initial_val_loss"] - 0.5
    assert [r["step"] for r in result.val_curve] == [0, 10, 20, 30]
    assert m["tokens"] == 30 * 4 * 32 and m["flops"] > 6 * m["parameters"] * m["tokens"]


def test_a_known_initial_loss_is_used_not_recomputed(tiny_tokenized_dir, tiny_model_dir):
    _, result = _train(Run("t", dataclasses.replace(TINY, max_steps=2), initial_loss=12.5),
                       tiny_tokenized_dir, tiny_model_dir)
    assert result.val_curve[0] == {**result.val_curve[0], "step": 0, "val_loss": 12.5}


def test_eval_steps_and_data_fraction(tiny_tokenized_dir, tiny_model_dir):
    run = Run("t", dataclasses.replace(TINY, max_steps=5), eval_steps=(2,), data_fraction=0.25)
    _, result = _train(run, tiny_tokenized_dir, tiny_model_dir)
    assert [r["step"] for r in result.val_curve] == [0, 2, 5]
    all_blocks = len(data.load_split(tiny_tokenized_dir, "train"))
    assert result.metrics["train_blocks"] == -(-all_blocks // 4)  # ceil(a quarter)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains(name, tiny_tokenized_dir, tiny_model_dir):
    cfg = dataclasses.replace(TINY, optimizer=name, max_steps=3, lr=1e-2 if name == "sgd" else 1e-3)
    _, result = _train(Run(name, cfg), tiny_tokenized_dir, tiny_model_dir)
    assert result.metrics["optimizer"] == name
    assert result.metrics["final_val_loss"] < result.metrics["initial_val_loss"]


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(ParamError, match="valid: adamw, adam, sgd, rmsprop, adafactor"):
        build_optimizer("lamb", torch.nn.Linear(2, 2), 1e-3, 0.0)
    with pytest.raises(ParamError, match="train.optimizer"):
        dataclasses.replace(TINY, optimizer="lamb").validate()


def test_divergence_stops_a_study_run_and_fails_a_training(tiny_tokenized_dir, tiny_model_dir):
    wild = dataclasses.replace(TINY, optimizer="sgd", lr=5.0, max_grad_norm=0.0, max_steps=20, warmup_steps=0)
    _, result = _train(Run("wild", wild, diverge_factor=1.5), tiny_tokenized_dir, tiny_model_dir)
    m = result.metrics
    assert m["diverged"] is True and m["steps"] < 20
    assert m["final_val_loss"] != m["final_val_loss"]  # NaN: a diverged run has no final loss to show
    with pytest.raises(Diverged, match="lower the learning rate"):
        _train(Run("big", dataclasses.replace(wild, lr=9.0)), tiny_tokenized_dir, tiny_model_dir)


def test_lr_ramp_rises_exponentially(tiny_tokenized_dir, tiny_model_dir):
    run = Run("find", dataclasses.replace(TINY, max_steps=5, warmup_steps=0, lr_schedule="constant"),
              lr_ramp=(1e-5, 1e-1), diverge_factor=100.0)
    _, result = _train(run, tiny_tokenized_dir, tiny_model_dir)
    lrs = [r["lr"] for r in result.train_curve]
    assert lrs == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-6)


def test_scratch_run_uses_the_shape(tiny_tokenized_dir, tiny_model_dir):
    shape = Shape(hidden_size=16, layers=1, heads=2, kv_heads=1, intermediate_size=32, lr=3e-3)
    model, result = _train(Run("s", TINY, init="scratch", shape=shape), tiny_tokenized_dir, tiny_model_dir)
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert result.metrics["init"] == "scratch" and result.metrics["parameters"] < 10_000


def test_lora_trains_adapters_only_and_merges_to_a_plain_model(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    from transformers import pipeline

    from transferlm.lm.models import save_model

    cfg = dataclasses.replace(TINY, method="lora", lora_r=4, lora_alpha=8, lr=1e-2)
    model, result = _train(Run("lora", cfg), tiny_tokenized_dir, tiny_model_dir)
    m = result.metrics
    assert 0 < m["trainable_parameters"] < m["parameters"] / 2
    assert m["final_val_loss"] < m["initial_val_loss"]
    save_model(model, tiny_model_dir, tmp_path / "model")
    assert "lora" not in (tmp_path / "model/config.json").read_text().lower()
    generator = pipeline("text-generation", model=str(tmp_path / "model"))
    assert generator("HAMLET:", max_new_tokens=4, do_sample=False)[0]["generated_text"].startswith("HAMLET:")


def test_run_folder_is_dvclive_logged_and_reads_back(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train_loss.csv").write_text("an older run's file\n")  # nothing of an older run stays
    heldout = data.heldout_blocks(tiny_tokenized_dir, 8, 0)
    _, result = train(Run("w", TINY), data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir, heldout=heldout,
                      log_dir=folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {**json.loads(json.dumps(result.metrics)), "step": TINY.max_steps}
    assert (folder / "params.yaml").is_file() and not (folder / "train_loss.csv").exists()
    assert series_path(folder, "val", "val_loss").read_text().splitlines()[0] == "step\tloss"
    assert read_curve(folder, "train") == [pytest.approx(row) for row in result.train_curve]
    assert read_curve(folder, "val") == [pytest.approx(row) for row in result.val_curve]
    assert [row["step"] for row in read_curve(folder, "val")] == [0, 3, 6]


def test_auto_must_be_resolved_before_training(tiny_tokenized_dir, tiny_model_dir):
    with pytest.raises(ValueError, match="auto"):
        _train(Run("auto", dataclasses.replace(TINY, lr="auto")), tiny_tokenized_dir, tiny_model_dir)


# ------------------------------------------------------------------------------------ early stopping


def test_early_stop_keeps_the_best_point_and_counts_evaluations_without_one():
    from transferlm.training.loop import EarlyStop

    early = EarlyStop(patience=2)
    for step, loss in [(0, 4.0), (10, 3.5), (20, 3.6), (30, 3.4), (40, 3.45)]:
        early.update(step, loss)
        assert not early.should_stop
    early.update(50, float("nan"))  # a NaN is never a best, and counts as no improvement
    assert early.best_step == 30 and early.best_loss == 3.4 and early.should_stop
    assert not EarlyStop(patience=0).should_stop  # 0: never stops, though it still keeps the best


def test_early_stopping_stops_after_patience_and_returns_the_best_weights(tiny_tokenized_dir, tiny_model_dir):
    from transferlm.lm.models import load_pretrained

    # A start nothing can beat (loss 0 before training): every evaluation is "no better", so the run stops
    # after `patience` of them, and the model it returns is the untouched starting point.
    run = Run("t", dataclasses.replace(TINY, max_steps=10, lr=3e-3), eval_steps=tuple(range(1, 10)),
              initial_loss=0.0, patience=2)
    model, result = _train(run, tiny_tokenized_dir, tiny_model_dir)
    m = result.metrics
    assert m["steps"] == 2 and m["stopped_early"] and m["best_step"] == 0
    start = load_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_with_patience_a_run_that_keeps_improving_runs_to_the_end(tiny_tokenized_dir, tiny_model_dir):
    run = Run("t", dataclasses.replace(TINY, max_steps=30, eval_every=10, lr=3e-3), patience=1)
    model, result = _train(run, tiny_tokenized_dir, tiny_model_dir)
    m = result.metrics
    assert m["steps"] == 30 and not m["stopped_early"] and m["best_step"] == 30
    heldout = data.heldout_blocks(tiny_tokenized_dir, 8, 0)
    from transferlm.lm.heldout import heldout_loss

    assert heldout_loss(model, heldout, 4)[0] == pytest.approx(m["best_val_loss"], abs=1e-5)  # the model scored


def test_best_weights_saved_beside_a_checkpoint_load_back(tmp_path, tiny_model_dir):
    from accelerate import Accelerator

    from transferlm.training.checkpoint import Checkpoints

    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    ckpt = Checkpoints(tmp_path, "fp", Accelerator(cpu=True))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    ckpt.save(4, 1.0, model, optimizer, scheduler, {"train": [], "val": []}, best=(2, weights))
    assert torch.equal(ckpt.load_best(2)["w"], weights["w"])
    assert ckpt.load_best(3) is None  # no such best: the run keeps only later ones


def test_bits_per_byte_is_nats_per_token_times_tokens_over_bytes_over_ln2(tiny_model_dir):
    import math

    from transformers import AutoTokenizer

    from transferlm.lm.heldout import bits_per_byte, heldout_bytes_per_token

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "To be, or not to be: that is the question. Ça va? 😀"
    ids = tokenizer(text)["input_ids"]
    blocks = torch.tensor([[tokenizer.eos_token_id, *ids]])  # the first token of a block is never scored
    per_token = heldout_bytes_per_token(blocks, tiny_model_dir)
    assert per_token == pytest.approx(len(text.encode("utf-8")) / len(ids))
    assert bits_per_byte(2.0, per_token) == pytest.approx(2.0 * len(ids) / len(text.encode("utf-8")) / math.log(2))


def test_samples_while_training_are_logged_at_each_evaluation(tiny_tokenized_dir, tiny_model_dir, tmp_path):
    from transferlm.core.curves import read_samples

    heldout = data.heldout_blocks(tiny_tokenized_dir, 8, 0)
    run = Run("t", dataclasses.replace(TINY, max_steps=40, eval_every=20, lr=1e-2), sample_tokens=8)
    train(run, data_dir=tiny_tokenized_dir, base_dir=tiny_model_dir, heldout=heldout, log_dir=tmp_path / "run")
    samples = read_samples(tmp_path / "run")
    assert [s["step"] for s in samples] == [0, 20, 40]
    assert len({s["prompt"] for s in samples}) == 1 and all(s["text"] for s in samples)
    assert samples[0]["text"] != samples[-1]["text"]  # the model changed, and greedy text shows it
