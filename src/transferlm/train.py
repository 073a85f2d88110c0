"""One training run: fine-tune (or train from scratch) a causal LM on packed blocks.

A short loop over `accelerate` rather than transformers' `Trainer`: bench/train_throughput.py measures
the Trainer at about half (bf16) and a quarter (fp32) of this loop's tokens/s on CPU, thanks to the
levers in transferlm.speed (figures in bench/README.md), and this loop needs things the Trainer makes
awkward — a deterministic batch order that a checkpoint can resume from by step number alone, loss
curves against tokens and FLOPs, and early stopping of diverged sweep runs.
`accelerate` still does what it does well: device placement, DDP under `accelerate launch`/`torchrun`,
gradient accumulation, and saving/restoring model, optimizer and RNG state.

Batch order is a pure function of (seed, step): each epoch is a seeded permutation of the training
blocks and step s takes the next slice. A resumed run therefore sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from transferlm.device import autocast, pick_device, resolve_precision
from transferlm.errors import InputError, TransferLMError
from transferlm.optim import build_optimizer, flops_per_token
from transferlm.params import TrainParams
from transferlm.speed import (
    LEVERS,
    CausalLMLoss,
    attention_implementation,
    compile_decoder_layers,
    eager_mode,
    keep_freed_memory,
    should_compile,
    uncompile,
)

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ("step", "tokens", "flops", "seconds", "loss", "lr")
VAL_COLUMNS = ("step", "tokens", "flops", "seconds", "val_loss")


class Diverged(TransferLMError):
    pass


@dataclass
class Curves:
    """Loss curves as rows of the plots/*.csv files, kept in memory and in checkpoints."""

    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(out_dir / "train_loss.csv", TRAIN_COLUMNS, self.train)
        _write_csv(out_dir / "val_loss.csv", VAL_COLUMNS, self.val)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(_fmt(row[c]) for c in columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# ----------------------------------------------------------------------------------------------- data


def load_blocks(data_dir: Path, split: str) -> torch.Tensor:
    """The packed blocks of one split as a LongTensor [n_blocks, block_size]."""
    from datasets import load_from_disk

    if not data_dir.exists():
        raise InputError(f"{data_dir}: not found (run the tokenize stage first)")
    dataset = load_from_disk(str(data_dir))
    if split not in dataset:
        raise InputError(f"{data_dir}: has no {split!r} split")
    return torch.as_tensor(dataset[split].with_format("numpy")[:]["input_ids"], dtype=torch.long)


def eval_subset(blocks: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of n blocks (all of them when n is 0 or larger than the split)."""
    if n == 0 or n >= len(blocks):
        return blocks
    generator = torch.Generator().manual_seed(seed)
    return blocks[torch.randperm(len(blocks), generator=generator)[:n].sort().values]


def batch_indices(step: int, global_batch: int, n_blocks: int, seed: int) -> torch.Tensor:
    """Indices of the blocks in global batch `step`: consecutive slices of per-epoch permutations."""
    start = step * global_batch
    indices = []
    while len(indices) < global_batch:
        epoch, offset = divmod(start + len(indices), n_blocks)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        indices.extend(perm[offset : offset + global_batch - len(indices)].tolist())
    return torch.tensor(indices)


# ---------------------------------------------------------------------------------------------- model


def load_model(base_dir: Path, init: str, seed: int):
    """The base model's weights (`pretrained`) or the same architecture freshly initialised (`scratch`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (base_dir / "config.json").is_file():
        raise InputError(f"{base_dir}: no config.json (run the fetch stage first)")
    if init == "pretrained":
        # Weights only from safetensors, never a pickle; never remote code.
        return AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
        )
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(base_dir, trust_remote_code=False)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def apply_lora(model, cfg: TrainParams):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


@torch.no_grad()
def validation_loss(model, blocks: torch.Tensor, batch_size: int, device, precision: str) -> float:
    """Mean next-token loss over every predicted token of `blocks`."""
    was_training = model.training
    model.eval()
    loss_of = CausalLMLoss(model, fused=LEVERS.fused_loss)
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        with autocast(device, precision), eager_mode():  # compiled layers: no extra no_grad compile
            loss = loss_of(batch)
        tokens = batch[:, 1:].numel()
        total += loss.item() * tokens
        count += tokens
    model.train(was_training)
    return total / count


# ------------------------------------------------------------------------------------------ training


@dataclass
class RunResult:
    metrics: dict
    curves: Curves


def params_fingerprint(cfg: TrainParams, data_dir: Path, base_dir: Path, extra: dict) -> str:
    """Identifies one experiment, so a checkpoint from different params is never resumed into."""
    blob = json.dumps(
        {
            "train": dataclasses.asdict(cfg),
            "extra": extra,
            "data": _dir_stamp(data_dir),
            "base": _dir_stamp(base_dir),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dir_stamp(path: Path) -> list:
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())


def run_training(
    cfg: TrainParams,
    data_dir: Path,
    base_dir: Path,
    checkpoint_dir: Path,
    diverge_factor: float | None = None,
    run_name: str = "train",
) -> tuple[object, RunResult]:
    """Train per `cfg`; return the (unwrapped) model and its metrics and curves.

    diverge_factor: stop early, without raising, when the training loss exceeds this multiple of the
    first step's loss or is NaN/inf (the sweep's setting). Without it a NaN loss raises `Diverged`.
    Checkpoints go to `checkpoint_dir` every `cfg.save_every` steps and are removed at the end.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cpu" and LEVERS.keep_freed_memory and keep_freed_memory():
        log.debug("malloc keeps freed memory for reuse (see transferlm.speed)")
    accelerator = Accelerator(
        cpu=device.type == "cpu",
        gradient_accumulation_steps=cfg.grad_accum,
        # We apply bf16 autocast ourselves (same code on CPU and CUDA), so accelerate adds none.
        mixed_precision="no",
    )
    device = accelerator.device
    set_seed(cfg.seed)

    train_blocks = load_blocks(data_dir, "train")
    val_blocks = eval_subset(load_blocks(data_dir, "validation"), cfg.eval_blocks, cfg.seed)
    block_size = train_blocks.shape[1]

    model = load_model(base_dir, cfg.init, cfg.seed)
    saved_attention = model.config._attn_implementation
    model.set_attn_implementation(attention_implementation(device, block_size, saved_attention))
    n_params = sum(p.numel() for p in model.parameters())
    if cfg.method == "lora":
        model = apply_lora(model, cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.config.use_cache = False
    flops_token = flops_per_token(model.config, block_size, n_params, full_backward=cfg.method == "full")

    optimizer = build_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=cfg.max_steps,
    )
    # The loss wrapper is what gets prepared, so that DDP wraps the whole loss computation.
    loss_model, optimizer = accelerator.prepare(CausalLMLoss(model, fused=LEVERS.fused_loss), optimizer)
    accelerator.register_for_checkpointing(scheduler)

    world = accelerator.num_processes
    global_batch = cfg.batch_size * cfg.grad_accum * world
    tokens_per_step = global_batch * block_size
    run_flops = cfg.max_steps * tokens_per_step * flops_token
    compiled = compile_decoder_layers(model) if should_compile(device, run_flops) else []
    fingerprint = params_fingerprint(
        cfg, data_dir, base_dir,
        {"diverge_factor": diverge_factor, "world": world, "levers": dataclasses.asdict(LEVERS)},
    )

    curves = Curves()
    start_step, seconds_before = 0, 0.0
    resumed = _resume(accelerator, checkpoint_dir, fingerprint)
    if resumed is not None:
        start_step, seconds_before, curves = resumed
        log.info("%s: resuming from step %d (checkpoint in %s)", run_name, start_step, checkpoint_dir)
    else:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)

    def point(step: int, seconds: float) -> dict:
        tokens = step * tokens_per_step
        return {"step": step, "tokens": tokens, "flops": tokens * flops_token, "seconds": round(seconds, 3)}

    if start_step == 0:
        initial = validation_loss(model, val_blocks, cfg.batch_size, device, precision)
        curves.val.append({**point(0, 0.0), "val_loss": initial})
        log.info("%s: validation loss before training %.4f", run_name, initial)

    log.info(
        "%s: %s init, %s, %s lr %.3g, %d steps x %d tokens, %s on %s%s, %d/%d parameters trainable",
        run_name, cfg.init, cfg.method, cfg.optimizer, cfg.lr, cfg.max_steps, tokens_per_step,
        precision, device, " (compiled layers)" if compiled else "", n_trainable, n_params,
    )
    model.train()
    diverged = False
    first_loss = curves.train[0]["loss"] if curves.train else None
    t0 = time.perf_counter() - seconds_before
    progress = tqdm(
        range(start_step, cfg.max_steps), initial=start_step, total=cfg.max_steps,
        desc=run_name, unit="step", disable=not accelerator.is_local_main_process,
    )
    steady_tokens, steady_t0, rate = 0, None, 0.0
    for step in progress:
        indices = batch_indices(step, global_batch, len(train_blocks), cfg.seed)
        step_loss = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            # This process's share of micro-batch `micro`: contiguous slices, rank-major.
            offset = (micro * world + accelerator.process_index) * cfg.batch_size
            batch = train_blocks[indices[offset : offset + cfg.batch_size]].to(device)
            with accelerator.accumulate(loss_model):
                with autocast(device, precision):
                    loss = loss_model(batch)
                accelerator.backward(loss)
                step_loss += loss.detach() / cfg.grad_accum
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(loss_model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        loss_value = accelerator.reduce(step_loss, reduction="mean").item()
        elapsed = time.perf_counter() - t0
        curves.train.append({**point(step + 1, elapsed), "loss": loss_value, "lr": scheduler.get_last_lr()[0]})
        if first_loss is None:
            first_loss = loss_value
        if step == start_step + 1:  # the first step pays one-off costs; measure speed after it
            steady_tokens, steady_t0 = 0, time.perf_counter()
        steady_tokens += tokens_per_step
        rate = steady_tokens / (time.perf_counter() - steady_t0) if steady_t0 and step > start_step + 1 else 0.0
        progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:.0f}")

        if not math.isfinite(loss_value) or (diverge_factor and loss_value > diverge_factor * first_loss):
            if diverge_factor is None:
                raise Diverged(
                    f"{run_name} diverged at step {step + 1} (loss {loss_value}); lower the learning rate"
                )
            log.warning("%s: diverged at step %d (loss %s); stopping this run", run_name, step + 1, loss_value)
            diverged = True
            break

        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            val = validation_loss(model, val_blocks, cfg.batch_size, device, precision)
            curves.val.append({**point(done, time.perf_counter() - t0), "val_loss": val})
            log.info("%s: step %d validation loss %.4f", run_name, done, val)
        if cfg.save_every and done % cfg.save_every == 0 and done < cfg.max_steps:
            _save_checkpoint(accelerator, checkpoint_dir, fingerprint, done, time.perf_counter() - t0, curves)
    progress.close()

    seconds = time.perf_counter() - t0
    steps_done = curves.train[-1]["step"] if curves.train else 0
    val_losses = [row["val_loss"] for row in curves.val]
    finite_val = [v for v in val_losses if math.isfinite(v)]
    metrics = {
        "init": cfg.init,
        "method": cfg.method,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "steps": steps_done,
        "tokens": steps_done * tokens_per_step,
        "flops": steps_done * tokens_per_step * flops_token,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(rate if rate else steps_done * tokens_per_step / max(seconds, 1e-9), 1),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "precision": precision,
        "initial_val_loss": val_losses[0],
        "final_val_loss": val_losses[-1],
        "best_val_loss": min(finite_val) if finite_val else float("nan"),
        "final_train_loss": curves.train[-1]["loss"] if curves.train else float("nan"),
        "diverged": diverged,
    }
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(loss_model).model
    uncompile(compiled)
    if cfg.method == "lora":
        model = model.merge_and_unload()  # a plain model that loads without peft
    model.config.use_cache = True
    model.set_attn_implementation(saved_attention)  # the choice above was for training speed only
    return model, RunResult(metrics=metrics, curves=curves)


# --------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(accelerator, checkpoint_dir: Path, fingerprint: str, step: int, seconds: float, curves: Curves):
    """Save state to a fresh folder, then swap it in: a kill mid-save leaves the previous one intact."""
    if not accelerator.is_main_process:
        accelerator.save_state(str(checkpoint_dir / f"step-{step}.partial"))
        return
    target = checkpoint_dir / f"step-{step}"
    partial = checkpoint_dir / f"step-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    accelerator.save_state(str(partial))
    (partial / "progress.json").write_text(
        json.dumps({"fingerprint": fingerprint, "step": step, "seconds": seconds,
                    "curves": dataclasses.asdict(curves)}),
        encoding="utf-8",
    )
    partial.rename(target)
    for old in checkpoint_dir.glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint saved at step %d", step)


def _resume(accelerator, checkpoint_dir: Path, fingerprint: str):
    """Load the latest complete checkpoint of this same experiment, if any."""
    candidates = sorted(
        (p for p in checkpoint_dir.glob("step-*") if not p.name.endswith(".partial") and (p / "progress.json").is_file()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    if not candidates:
        return None
    latest = candidates[-1]
    progress = json.loads((latest / "progress.json").read_text(encoding="utf-8"))
    if progress.get("fingerprint") != fingerprint:
        log.info("checkpoint in %s is from different params or data; starting over", checkpoint_dir)
        return None
    accelerator.load_state(str(latest))
    return progress["step"], progress["seconds"], Curves(**progress["curves"])


def clear_checkpoints(checkpoint_dir: Path) -> None:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- saving


def save_model(model, tokenizer_dir: Path, out_dir: Path, card: str) -> None:
    """Plain Hugging Face layout: safetensors weights, config, tokenizer and a model card."""
    from transformers import AutoTokenizer

    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    (out_dir / "README.md").write_text(card, encoding="utf-8")


def model_card(title: str, base: str, corpus: list[str], cfg: TrainParams, metrics: dict) -> str:
    params = "\n".join(f"| {k} | {v} |" for k, v in dataclasses.asdict(cfg).items())
    results = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [transferlm, causal-lm]
---
# {title}

Made by the transferlm pipeline (`dvc repro`).

- Base model: `{base}`
- Corpus: {", ".join(f"`{c}`" for c in corpus)}
- Load: `pipeline("text-generation", model="<this folder>")`

## Training params

| param | value |
|---|---|
{params}

## Final metrics

| metric | value |
|---|---|
{results}
"""


def train_and_save(
    cfg: TrainParams,
    *,
    data_dir: Path,
    base_dir: Path,
    metrics_out: Path,
    plots_out: Path,
    model_out: Path | None,
    checkpoint_dir: Path,
    run_name: str,
    card_title: str = "",
    corpus: list[str] | None = None,
    base_name: str = "",
    diverge_factor: float | None = None,
) -> dict:
    """Run one training and write its outputs all-or-nothing: metrics JSON, curves, and the model."""
    from transferlm.outputs import dump_json, staged_outputs

    model, result = run_training(cfg, data_dir, base_dir, checkpoint_dir, diverge_factor, run_name)
    finals = [metrics_out, plots_out] + ([model_out] if model_out else [])
    with staged_outputs(*finals) as temps:
        dump_json(temps[0], result.metrics)
        result.curves.write(temps[1])
        if model_out:
            card = model_card(card_title, base_name, corpus or [], cfg, result.metrics)
            save_model(model, base_dir, temps[2], card)
    clear_checkpoints(checkpoint_dir)
    log.info("%s: done, validation loss %.4f -> %.4f in %.0f s",
             run_name, result.metrics["initial_val_loss"], result.metrics["final_val_loss"], result.metrics["seconds"])
    return result.metrics
