"""One training run: a causal LM trained on packed blocks, its held-out loss measured along the way.

A short loop over `accelerate` rather than transformers' `Trainer`: bench/train_throughput.py measures
the Trainer well below this loop's tokens/s on CPU, thanks to the levers in transferlm.speed (figures
in bench/README.md), and this loop needs things the Trainer makes awkward: a deterministic batch order
that a checkpoint resumes from by step number alone, loss curves against tokens and FLOPs, early stop
of diverged runs, and the exponential lr ramp of an lr range test. `accelerate` still does what it does
well: device placement, DDP under `accelerate launch`/`torchrun`, gradient accumulation.

A `Run` says what to train (the fine-tune, a size of the from-scratch ladder, a study grid point);
`train()` logs the curves and metrics to a run folder as it goes (transferlm.curves, through dvclive)
and returns the model and a `RunResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from transferlm import data, models
from transferlm.checkpoint import Checkpoints, content_hash, fingerprint
from transferlm.curves import CurveLog
from transferlm.device import autocast, last_precision_decision, pick_device, resolve_precision
from transferlm.errors import TransferLMError
from transferlm.heldout import bits_per_byte, decode, greedy_continuation, heldout_bytes_per_token, heldout_loss
from transferlm.optim import build_optimizer, flops_per_token
from transferlm.params import Shape, TrainParams
from transferlm.speed import (
    LEVERS,
    CausalLMLoss,
    attention_implementation,
    compile_decoder_layers,
    fuse_layers,
    keep_freed_memory,
    lever_on,
    should_compile,
    uncompile,
    unfuse,
)

log = logging.getLogger(__name__)

PRECISION_KEYS = ("precision", "source", "reason", "bf16_gflops", "fp32_gflops")  # kept in metrics
SAMPLE_PROMPT_TOKENS = 24  # the samples-while-training prompt: the first held-out block's opening


class Diverged(TransferLMError):
    pass


@dataclass(frozen=True)
class Run:
    """What one training run does. `train` carries a concrete optimizer and lr (never "auto")."""

    name: str
    train: TrainParams
    init: str = "pretrained"  # or "scratch": the base model's family at `shape`, random weights
    shape: Shape | None = None  # scratch only; None = the base model's own shape
    data_fraction: float = 1.0  # of the training split's blocks (seeded by train.seed)
    diverge_factor: float | None = None  # stop (not fail) when the loss exceeds this x the first loss
    lr_ramp: tuple[float, float] | None = None  # lr range test: lr rises exponentially from a to b
    eval_steps: tuple[int, ...] = ()  # steps after which to measure the held-out loss (default: eval_every)
    initial_loss: float | None = None  # the held-out loss before training when known (the zero-shot model)
    # Early stopping: None = off (the last step's weights are returned); n >= 0 = keep the best held-out
    # point's weights, and stop after n evaluations without a new best (0 = never stop early).
    patience: int | None = None
    # Samples while training: at each held-out measurement, this many tokens of greedy continuation of the
    # first held-out block's opening (0 = none), logged to the run folder's samples.jsonl.
    sample_tokens: int = 0

    def evals(self) -> set[int]:
        steps = set(self.eval_steps) or set(range(self.train.eval_every, self.train.max_steps, self.train.eval_every))
        return {s for s in steps if 0 < s < self.train.max_steps} | {self.train.max_steps}


@dataclass
class EarlyStop:
    """The best held-out point so far and its weights (on the CPU); says when `patience` evaluations have
    passed without a new best. Step 0 (before training) counts: a run that only got worse keeps its start."""

    patience: int
    best_loss: float = math.inf
    best_step: int = 0
    since_best: int = 0
    weights: dict | None = None

    def update(self, step: int, loss: float, model=None) -> None:
        if math.isfinite(loss) and loss < self.best_loss:
            self.best_loss, self.best_step, self.since_best = loss, step, 0
            if model is not None:
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.since_best += 1

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience


@dataclass
class RunResult:
    metrics: dict
    train_curve: list[dict] = field(default_factory=list)
    val_curve: list[dict] = field(default_factory=list)


def _scheduler(optimizer, run: Run):
    from transformers import get_scheduler

    cfg = run.train
    if run.lr_ramp is not None:  # lr range test: lr_min * (lr_max / lr_min) ** (step / (steps - 1))
        low, high = run.lr_ramp
        span = max(cfg.max_steps - 1, 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (high / low) ** (min(step, span) / span))
    return get_scheduler(
        cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=min(cfg.warmup_steps, cfg.max_steps),
        num_training_steps=cfg.max_steps,
    )


def train(run: Run, *, data_dir: Path, base_dir: Path, heldout: torch.Tensor,
          checkpoint_dir: Path | None = None, log_dir: Path | None = None) -> tuple[object, RunResult]:
    """Train per `run`; return the (unwrapped, uncompiled) model and its metrics and curves.

    A NaN/inf loss raises `Diverged` unless `run.diverge_factor` is set (then the run stops early and is
    marked diverged). Checkpoints go to `checkpoint_dir` every `train.save_every` steps; the caller
    removes them once it has saved what it needs. Curves and metrics are logged to `log_dir` as the run
    goes (by the main process).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = run.train
    if isinstance(cfg.lr, str) or cfg.optimizer == "auto":
        raise ValueError(f"{run.name}: resolve train.optimizer/lr 'auto' before training")  # a caller's bug
    device = pick_device()
    accelerator = Accelerator(
        cpu=device.type == "cpu",
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision="no",  # bf16 autocast is applied here, the same way on CPU and CUDA
    )
    device = accelerator.device
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:  # each process would train alone on the same batches
        raise TransferLMError(f"{launched} processes were launched but {accelerator.num_processes} joined the run; "
                              "was accelerate's state set up before train()?")
    set_seed(cfg.seed)

    train_blocks = data.training_blocks(data_dir, run.data_fraction, cfg.seed)
    block_size = train_blocks.shape[1]
    if run.init == "pretrained":
        model = models.load_pretrained(base_dir)
    else:
        model = models.new_model(base_dir, run.shape, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    precision = resolve_precision(cfg.precision, device, hidden_size=model.config.hidden_size,
                                  intermediate_size=getattr(model.config, "intermediate_size", None),
                                  tokens=cfg.batch_size * block_size)
    # Every lever is asked with the precision this run trains in: one of no gain on that path stays off.
    if device.type == "cpu" and lever_on("keep_freed_memory", precision):
        keep_freed_memory()
    saved_attention = model.config._attn_implementation
    model.set_attn_implementation(attention_implementation(device, block_size, saved_attention, precision))
    if cfg.method == "lora":
        model = models.apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    fused = fuse_layers(model) if lever_on("fused_layers", precision) else []
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.config.use_cache = False
    flops_token = flops_per_token(model.config, block_size, n_params, full_backward=cfg.method == "full")

    optimizer = build_optimizer(cfg.optimizer, model, run.lr_ramp[0] if run.lr_ramp else cfg.lr, cfg.weight_decay,
                                fused_adam=lever_on("fused_optimizer", precision))
    scheduler = _scheduler(optimizer, run)
    # The loss wrapper is what gets prepared, so that DDP wraps the whole loss computation.
    loss_model, optimizer = accelerator.prepare(CausalLMLoss(model, fused=lever_on("fused_loss", precision)), optimizer)

    world = accelerator.num_processes
    global_batch = cfg.batch_size * cfg.grad_accum * world
    tokens_per_step = global_batch * block_size
    run_flops = cfg.max_steps * tokens_per_step * flops_token
    compiled = compile_decoder_layers(model) if should_compile(device, run_flops, precision) else []

    def point(step: int, seconds: float) -> dict:
        tokens = step * tokens_per_step
        return {"step": step, "tokens": tokens, "flops": tokens * flops_token, "seconds": round(seconds, 3)}

    checkpoints = None
    curves: dict = {"train": [], "val": []}
    start_step, seconds_before = 0, 0.0
    # The levers as this precision's path applies them (NO_GAIN_ON included): a checkpoint made with other
    # levers in effect does not resume this run.
    levers = {lever.name: lever_on(lever.name, precision) for lever in dataclasses.fields(LEVERS)}
    settings = {"run": dataclasses.asdict(run), "world": world, "levers": levers,
                "heldout": content_hash_tensor(heldout)}
    if checkpoint_dir is not None and cfg.save_every:
        checkpoints = Checkpoints(checkpoint_dir, fingerprint(settings, content_hash(data_dir, base_dir)), accelerator)
        resumed = checkpoints.resume(model, optimizer, scheduler)
        if resumed is not None:
            start_step, seconds_before, curves = resumed
            log.info("%s: resuming from step %d (checkpoint in %s)", run.name, start_step, checkpoint_dir)
        else:
            checkpoints.clear()
    curve_log = CurveLog(log_dir if accelerator.is_main_process else None, settings, curves)

    def record(kind: str, row: dict) -> None:
        curves[kind].append(row)
        curve_log.log(kind, row)

    prompt = heldout[0, :SAMPLE_PROMPT_TOKENS]

    def sample(step: int) -> None:  # the text a user would read, at this point of training
        if run.sample_tokens:
            text = decode(greedy_continuation(model, prompt, run.sample_tokens, precision), base_dir)
            row = {"step": step, "prompt": decode(prompt.tolist(), base_dir), "text": text}
            curves.setdefault("samples", []).append(row)
            curve_log.sample(row)

    early = None if run.patience is None else EarlyStop(run.patience)
    if start_step == 0:
        initial = run.initial_loss
        if initial is None:
            initial, _ = heldout_loss(model, heldout, cfg.batch_size, precision)
        record("val", {**point(0, 0.0), "val_loss": initial})
        log.info("%s: held-out loss before training %.4f", run.name, initial)
        if early:
            early.update(0, initial, model)
        sample(0)
    elif early:  # the resumed curve says where the best point was; its weights come from the checkpoint
        for row in curves["val"]:
            early.update(row["step"], row["val_loss"])
        early.weights = checkpoints.load_best(early.best_step)

    log.info(
        "%s: %s init, %s, %s lr %s, %d steps x %d tokens, %s on %s%s, %d/%d parameters trainable",
        run.name, run.init, cfg.method, cfg.optimizer, f"{run.lr_ramp[0]:.3g}->{run.lr_ramp[1]:.3g}" if run.lr_ramp
        else f"{cfg.lr:.3g}", cfg.max_steps, tokens_per_step, precision, device,
        " (compiled layers)" if compiled else "", n_trainable, n_params,
    )
    evals = run.evals()
    model.train()
    diverged = False
    first_loss = curves["train"][0]["loss"] if curves["train"] else None
    t0 = time.perf_counter() - seconds_before
    progress = tqdm(range(start_step, cfg.max_steps), initial=start_step, total=cfg.max_steps,
                    desc=run.name, unit="step", disable=not accelerator.is_local_main_process)
    steady_tokens, steady_t0, rate = 0, None, 0.0
    for step in progress:
        indices = data.batch_indices(step, global_batch, len(train_blocks), cfg.seed)
        step_loss = torch.zeros((), device=device)
        lr_now = scheduler.get_last_lr()[0]
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
        record("train", {**point(step + 1, time.perf_counter() - t0), "loss": loss_value, "lr": lr_now})
        if first_loss is None:
            first_loss = loss_value
        if step == start_step + 1:  # the first step pays one-off costs; measure speed after it
            steady_tokens, steady_t0 = 0, time.perf_counter()
        steady_tokens += tokens_per_step
        if steady_t0 and step > start_step + 1:
            rate = steady_tokens / (time.perf_counter() - steady_t0)
        progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:.0f}")

        if not math.isfinite(loss_value) or (run.diverge_factor and loss_value > run.diverge_factor * first_loss):
            if run.diverge_factor is None:
                raise Diverged(f"{run.name} diverged at step {step + 1} (loss {loss_value}); lower the learning rate")
            log.warning("%s: diverged at step %d (loss %s); stopping this run", run.name, step + 1, loss_value)
            diverged = True
            break

        done = step + 1
        if done in evals:
            val, _ = heldout_loss(model, heldout, cfg.batch_size, precision)
            record("val", {**point(done, time.perf_counter() - t0), "val_loss": val})
            log.info("%s: step %d held-out loss %.4f", run.name, done, val)
            sample(done)
            if early:
                early.update(done, val, model)
                if early.should_stop:
                    log.info("%s: no new best in %d evaluations; stopping at step %d (best: step %d, %.4f)",
                             run.name, early.patience, done, early.best_step, early.best_loss)
                    break
        if checkpoints and done % cfg.save_every == 0 and done < cfg.max_steps:
            checkpoints.save(done, time.perf_counter() - t0, model, optimizer, scheduler, curves,
                             best=(early.best_step, early.weights) if early else None)
    progress.close()
    if early and early.weights is not None and early.best_step != curves["val"][-1]["step"]:
        model.load_state_dict(early.weights)  # the best point's weights are the run's model

    seconds = time.perf_counter() - t0
    steps_done = curves["train"][-1]["step"] if curves["train"] else 0
    val_losses = [row["val_loss"] for row in curves["val"]]
    finite_val = [v for v in val_losses if math.isfinite(v)]
    metrics = {
        "name": run.name,
        "init": run.init,
        "method": cfg.method,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "data_fraction": run.data_fraction,
        "train_blocks": len(train_blocks),
        "steps": steps_done,
        "tokens": steps_done * tokens_per_step,
        "flops": steps_done * tokens_per_step * flops_token,
        "flops_per_token": flops_token,
        "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(steps_done - start_step, 1), 4),
        "tokens_per_s": round(rate if rate else steps_done * tokens_per_step / max(seconds, 1e-9), 1),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "precision": precision,
        "precision_choice": {k: v for k, v in last_precision_decision().items() if k in PRECISION_KEYS},
        "heldout_tokens": int(heldout[:, 1:].numel()),
        "initial_val_loss": val_losses[0] if val_losses else float("nan"),
        "final_val_loss": val_losses[-1] if val_losses and not diverged else float("nan"),
        "best_val_loss": min(finite_val) if finite_val else float("nan"),
        "best_step": _best_step(curves["val"]),
        "stopped_early": bool(early and early.should_stop),
        "final_train_loss": curves["train"][-1]["loss"] if curves["train"] else float("nan"),
        "diverged": diverged,
    }
    bytes_per_token = heldout_bytes_per_token(heldout, base_dir)
    for key in ("initial_val_loss", "final_val_loss", "best_val_loss"):
        metrics[key.replace("_loss", "_bpb")] = bits_per_byte(metrics[key], bytes_per_token)
    curve_log.close(metrics)
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(loss_model).model
    uncompile(compiled)
    unfuse(fused)
    if cfg.method == "lora":
        model = model.merge_and_unload()  # a plain model that loads without peft
    model.config.use_cache = True
    model.set_attn_implementation(saved_attention)  # the choice above was for training speed only
    return model, RunResult(metrics, curves["train"], curves["val"])


def _best_step(val_curve: list[dict]) -> int | None:
    finite = [row for row in val_curve if math.isfinite(row["val_loss"])]
    return int(min(finite, key=lambda row: row["val_loss"])["step"]) if finite else None


def content_hash_tensor(blocks: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(blocks.numpy().tobytes()).hexdigest()[:16]
