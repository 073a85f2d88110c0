"""One training run: a causal LM trained on packed blocks, its held-out loss measured along the way.

A short loop over `accelerate` rather than transformers' `Trainer`: bench/train_throughput.py measures
the Trainer well below this loop's tokens/s on CPU, thanks to the levers in transferlm.lm.speed (figures
in docs/performance.md), and this loop needs things the Trainer makes awkward: a deterministic batch order
that a checkpoint resumes from by step number alone, loss curves against tokens and FLOPs, early stop
of diverged runs, and the exponential lr ramp of an lr range test. `accelerate` still does what it does
well: device placement, DDP under `accelerate launch`/`torchrun`, gradient accumulation.

A `Run` says what to train (the fine-tune, a size of the from-scratch ladder, a study grid point);
`train()` logs the curves and metrics to a run folder as it goes (transferlm.core.curves, through dvclive)
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

from transferlm.core.curves import CurveLog
from transferlm.core.errors import TransferLMError
from transferlm.core.params import Shape, TrainParams
from transferlm.lm import blocks as data
from transferlm.lm import models
from transferlm.lm.device import autocast, pick_device, resolve_precision_decision
from transferlm.lm.heldout import bits_per_byte, decode, greedy_continuation, heldout_bytes_per_token, heldout_loss
from transferlm.lm.speed import (
    LEVERS,
    CausalLMLoss,
    SpeedSettings,
    attention_implementation,
    compile_decoder_layers,
    fuse_layers,
    keep_freed_memory,
    lever_applies,
    should_compile,
    uncompile,
    unfuse,
)
from transferlm.training.checkpoint import Checkpoints, content_hash, fingerprint
from transferlm.training.optim import build_optimizer, flops_per_token

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
          checkpoint_dir: Path | None = None, log_dir: Path | None = None,
          speed: SpeedSettings | None = None) -> tuple[object, RunResult]:
    """Train per `run`; return the (unwrapped, uncompiled) model and its metrics and curves.

    A NaN/inf loss raises `Diverged` unless `run.diverge_factor` is set (then the run stops early and is
    marked diverged). Checkpoints go to `checkpoint_dir` every `train.save_every` steps; the caller
    removes them once it has saved what it needs. Curves and metrics are logged to `log_dir` as the run
    goes (by the main process). `speed`: this run's lever switches (default: the library's defaults).
    """
    _check_resolved(run)
    speed = speed if speed is not None else SpeedSettings()
    session = _Session(run, data_dir, base_dir, heldout, checkpoint_dir, log_dir, speed)
    session.setup_accelerator()
    session.setup_data()
    session.setup_model()
    # The optimizer at the run's lr (the ramp's first for an lr range test), its fused kernel where that lever applies.
    cfg = run.train
    session.setup_optimizer(build_optimizer(cfg.optimizer, session.model, run.lr_ramp[0] if run.lr_ramp else cfg.lr,
                                            cfg.weight_decay, fused_adam=session.lever("fused_optimizer")))
    session.compile_layers()
    session.resume_or_start()
    session.measure_start()
    session.log_start()
    session.run_steps()
    session.keep_best_weights()
    metrics = session.metrics()
    session.log_metrics(metrics)
    return session.teardown(), RunResult(metrics, session.curves["train"], session.curves["val"])


def _check_resolved(run: Run) -> None:
    cfg = run.train
    if isinstance(cfg.lr, str) or cfg.optimizer == "auto":
        raise ValueError(f"{run.name}: resolve train.optimizer/lr 'auto' before training")  # a caller's bug


class _Session:
    """One train() call's state, built up by its steps (the methods train() calls, in its order)."""

    def __init__(self, run: Run, data_dir: Path, base_dir: Path, heldout: torch.Tensor,
                 checkpoint_dir: Path | None, log_dir: Path | None, speed: SpeedSettings):
        self.run, self.cfg = run, run.train
        self.data_dir, self.base_dir, self.heldout = data_dir, base_dir, heldout
        self.checkpoint_dir, self.log_dir, self.speed = checkpoint_dir, log_dir, speed

    # ------------------------------------------------------------------------------------------ set-up

    def setup_accelerator(self) -> None:
        """The Accelerator (device placement, DDP, gradient accumulation) and the seed."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.accelerator = Accelerator(
            cpu=pick_device().type == "cpu",
            gradient_accumulation_steps=self.cfg.grad_accum,
            mixed_precision="no",  # bf16 autocast is applied here, the same way on CPU and CUDA
        )
        self.device = self.accelerator.device
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if self.accelerator.num_processes != launched:  # each process would train alone on the same batches
            raise TransferLMError(f"{launched} processes were launched but {self.accelerator.num_processes} joined "
                                  "the run; was accelerate's state set up before train()?")
        set_seed(self.cfg.seed)

    def setup_data(self) -> None:
        self.train_blocks = data.training_blocks(self.data_dir, self.run.data_fraction, self.cfg.seed)
        self.block_size = self.train_blocks.shape[1]

    def setup_model(self) -> None:
        """The model, its training precision, and the levers that change the model for speed."""
        run, cfg = self.run, self.cfg
        if run.init == "pretrained":
            model = models.load_pretrained(self.base_dir)
        else:
            model = models.new_model(self.base_dir, run.shape, cfg.seed)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.precision_choice = resolve_precision_decision(
            cfg.precision, self.device, hidden_size=model.config.hidden_size,
            intermediate_size=getattr(model.config, "intermediate_size", None), tokens=cfg.batch_size * self.block_size)
        self.precision = self.precision_choice["precision"]
        # Every lever is asked with the precision this run trains in: one of no gain on that path stays off.
        if self.device.type == "cpu" and self.lever("keep_freed_memory"):
            keep_freed_memory()
        self.saved_attention = model.config._attn_implementation
        model.set_attn_implementation(attention_implementation(self.device, self.block_size, self.saved_attention,
                                                               self.precision, self.speed))
        if cfg.method == "lora":
            model = models.apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        self.fused = fuse_layers(model) if self.lever("fused_layers") else []
        self.n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        model.config.use_cache = False
        self.flops_token = flops_per_token(model.config, self.block_size, self.n_params,
                                           full_backward=cfg.method == "full")
        self.model = model

    def setup_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The lr schedule, and the loss wrapper and `optimizer` prepared by the Accelerator."""
        self.optimizer = optimizer
        self.scheduler = _scheduler(self.optimizer, self.run)
        # The loss wrapper is what gets prepared, so that DDP wraps the whole loss computation.
        self.loss_model, self.optimizer = self.accelerator.prepare(
            CausalLMLoss(self.model, fused=self.lever("fused_loss")), self.optimizer)

    def compile_layers(self) -> None:
        """The batch geometry across processes, and compiled decoder layers where the run's FLOPs pay for it."""
        self.world = self.accelerator.num_processes
        self.global_batch = self.cfg.batch_size * self.cfg.grad_accum * self.world
        self.tokens_per_step = self.global_batch * self.block_size
        run_flops = self.cfg.max_steps * self.tokens_per_step * self.flops_token
        self.compiled = (compile_decoder_layers(self.model)
                         if should_compile(self.device, run_flops, self.precision, self.speed) else [])

    def lever(self, name: str) -> bool:
        """Whether lever `name` applies to this run: on this precision's path, and not switched off by `speed`."""
        return lever_applies(name, self.precision, self.speed)

    # ------------------------------------------------------------------------------------------ resume

    def resume_or_start(self) -> None:
        """The curves so far and the step to start from: a matching checkpoint's, else none and step 0."""
        run, cfg = self.run, self.cfg
        self.checkpoints = None
        self.curves: dict = {"train": [], "val": []}
        self.start_step, self.seconds_before = 0, 0.0
        # The levers as this precision's path applies them (NO_GAIN_ON included): a checkpoint made with other
        # levers in effect does not resume this run.
        levers = {lever.name: self.lever(lever.name) for lever in dataclasses.fields(LEVERS)}
        settings = {"run": dataclasses.asdict(run), "world": self.world, "levers": levers,
                    "heldout": content_hash_tensor(self.heldout)}
        if self.checkpoint_dir is not None and cfg.save_every:
            self.checkpoints = Checkpoints(self.checkpoint_dir,
                                           fingerprint(settings, content_hash(self.data_dir, self.base_dir)),
                                           self.accelerator)
            resumed = self.checkpoints.resume(self.model, self.optimizer, self.scheduler)
            if resumed is not None:
                self.start_step, self.seconds_before, self.curves = resumed
                log.info("%s: resuming from step %d (checkpoint in %s)", run.name, self.start_step,
                         self.checkpoint_dir)
            else:
                self.checkpoints.clear()
        self.curve_log = CurveLog(self.log_dir if self.accelerator.is_main_process else None, settings, self.curves)

    def measure_start(self) -> None:
        """Step 0's held-out point (a fresh run), or the early-stop state a resumed curve implies."""
        run = self.run
        self.early = None if run.patience is None else EarlyStop(run.patience)
        if self.start_step == 0:
            initial = run.initial_loss
            if initial is None:
                initial, _ = heldout_loss(self.model, self.heldout, self.cfg.batch_size, self.precision, self.speed)
            self._record("val", {**self._point(0, 0.0), "val_loss": initial})
            log.info("%s: held-out loss before training %.4f", run.name, initial)
            if self.early:
                self.early.update(0, initial, self.model)
            self._sample(0)
        elif self.early:  # the resumed curve says where the best point was; its weights come from the checkpoint
            for row in self.curves["val"]:
                self.early.update(row["step"], row["val_loss"])
            self.early.weights = self.checkpoints.load_best(self.early.best_step)

    def log_start(self) -> None:
        run, cfg = self.run, self.cfg
        log.info(
            "%s: %s init, %s, %s lr %s, %d steps x %d tokens, %s on %s%s, %d/%d parameters trainable",
            run.name, run.init, cfg.method, cfg.optimizer, f"{run.lr_ramp[0]:.3g}->{run.lr_ramp[1]:.3g}"
            if run.lr_ramp else f"{cfg.lr:.3g}", cfg.max_steps, self.tokens_per_step, self.precision, self.device,
            " (compiled layers)" if self.compiled else "", self.n_trainable, self.n_params,
        )

    # ------------------------------------------------------------------------------------------ steps

    def run_steps(self) -> None:
        """The step loop: a training step, its record, then a stop if diverged, evaluation, a checkpoint."""
        cfg = self.cfg
        evals = self.run.evals()
        self.model.train()
        self.diverged = False
        self.first_loss = self.curves["train"][0]["loss"] if self.curves["train"] else None
        self.t0 = time.perf_counter() - self.seconds_before
        progress = tqdm(range(self.start_step, cfg.max_steps), initial=self.start_step, total=cfg.max_steps,
                        desc=self.run.name, unit="step", disable=not self.accelerator.is_local_main_process)
        self.steady_tokens, self.steady_t0, self.rate = 0, None, 0.0
        for step in progress:
            loss_value = self._train_step(step)
            self._record_step(step, loss_value, progress)
            if self._check_divergence(step, loss_value):
                break
            done = step + 1
            if done in evals and self._evaluate(done):
                break
            if self.checkpoints and done % cfg.save_every == 0 and done < cfg.max_steps:
                self.checkpoints.save(done, time.perf_counter() - self.t0, self.model, self.optimizer,
                                      self.scheduler, self.curves,
                                      best=(self.early.best_step, self.early.weights) if self.early else None)
        progress.close()

    def _train_step(self, step: int) -> float:
        """One optimizer step over this step's global batch (grad_accum micro-batches); its mean loss."""
        cfg, accelerator, device = self.cfg, self.accelerator, self.device
        indices = data.batch_indices(step, self.global_batch, len(self.train_blocks), cfg.seed)
        step_loss = torch.zeros((), device=device)
        self.lr_now = self.scheduler.get_last_lr()[0]
        for micro in range(cfg.grad_accum):
            # This process's share of micro-batch `micro`: contiguous slices, rank-major.
            offset = (micro * self.world + accelerator.process_index) * cfg.batch_size
            batch = self.train_blocks[indices[offset : offset + cfg.batch_size]].to(device)
            with accelerator.accumulate(self.loss_model):
                with autocast(device, self.precision):
                    loss = self.loss_model(batch)
                accelerator.backward(loss)
                step_loss += loss.detach() / cfg.grad_accum
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.loss_model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return accelerator.reduce(step_loss, reduction="mean").item()

    def _record_step(self, step: int, loss_value: float, progress) -> None:
        """The training curve's row for `step`, and the steady-state speed (from the second step on)."""
        self._record("train", {**self._point(step + 1, time.perf_counter() - self.t0), "loss": loss_value,
                               "lr": self.lr_now})
        if self.first_loss is None:
            self.first_loss = loss_value
        if step == self.start_step + 1:  # the first step pays one-off costs; measure speed after it
            self.steady_tokens, self.steady_t0 = 0, time.perf_counter()
        self.steady_tokens += self.tokens_per_step
        if self.steady_t0 and step > self.start_step + 1:
            self.rate = self.steady_tokens / (time.perf_counter() - self.steady_t0)
        progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{self.rate:.0f}")

    def _check_divergence(self, step: int, loss_value: float) -> bool:
        """True when the run diverged and is to stop; raises Diverged where the run has no diverge_factor."""
        run = self.run
        if not math.isfinite(loss_value) or (run.diverge_factor and loss_value > run.diverge_factor * self.first_loss):
            if run.diverge_factor is None:
                raise Diverged(f"{run.name} diverged at step {step + 1} (loss {loss_value}); lower the learning rate")
            log.warning("%s: diverged at step %d (loss %s); stopping this run", run.name, step + 1, loss_value)
            self.diverged = True
            return True
        return False

    def _evaluate(self, done: int) -> bool:
        """The held-out loss after `done` steps (and a sample); True when early stopping says stop."""
        val, _ = heldout_loss(self.model, self.heldout, self.cfg.batch_size, self.precision, self.speed)
        self._record("val", {**self._point(done, time.perf_counter() - self.t0), "val_loss": val})
        log.info("%s: step %d held-out loss %.4f", self.run.name, done, val)
        self._sample(done)
        early = self.early
        if early:
            early.update(done, val, self.model)
            if early.should_stop:
                log.info("%s: no new best in %d evaluations; stopping at step %d (best: step %d, %.4f)",
                         self.run.name, early.patience, done, early.best_step, early.best_loss)
                return True
        return False

    def _point(self, step: int, seconds: float) -> dict:
        tokens = step * self.tokens_per_step
        return {"step": step, "tokens": tokens, "flops": tokens * self.flops_token, "seconds": round(seconds, 3)}

    def _record(self, kind: str, row: dict) -> None:
        self.curves[kind].append(row)
        self.curve_log.log(kind, row)

    def _sample(self, step: int) -> None:  # the text a user would read, at this point of training
        if self.run.sample_tokens:
            prompt = self.heldout[0, :SAMPLE_PROMPT_TOKENS]
            text = decode(greedy_continuation(self.model, prompt, self.run.sample_tokens, self.precision),
                          self.base_dir)
            row = {"step": step, "prompt": decode(prompt.tolist(), self.base_dir), "text": text}
            self.curves.setdefault("samples", []).append(row)
            self.curve_log.sample(row)

    # ------------------------------------------------------------------------------------------ teardown

    def keep_best_weights(self) -> None:
        early = self.early
        if early and early.weights is not None and early.best_step != self.curves["val"][-1]["step"]:
            self.model.load_state_dict(early.weights)  # the best point's weights are the run's model

    def metrics(self) -> dict:
        """The run's metrics: what was trained, how far, how fast, and its held-out losses (also in bits/byte)."""
        run, cfg, curves = self.run, self.cfg, self.curves
        seconds = time.perf_counter() - self.t0
        steps_done = curves["train"][-1]["step"] if curves["train"] else 0
        tokens = steps_done * self.tokens_per_step
        val_losses = [row["val_loss"] for row in curves["val"]]
        finite_val = [v for v in val_losses if math.isfinite(v)]
        metrics = {
            "name": run.name, "init": run.init, "method": cfg.method, "optimizer": cfg.optimizer, "lr": cfg.lr,
            "seed": cfg.seed, "data_fraction": run.data_fraction, "train_blocks": len(self.train_blocks),
            "steps": steps_done, "tokens": tokens, "flops": tokens * self.flops_token,
            "flops_per_token": self.flops_token,
            "seconds": round(seconds, 2),
            "seconds_per_step": round(seconds / max(steps_done - self.start_step, 1), 4),
            "tokens_per_s": round(self.rate if self.rate else tokens / max(seconds, 1e-9), 1),
            "parameters": self.n_params,
            "trainable_parameters": self.n_trainable,
            "precision": self.precision,
            "precision_choice": {k: v for k, v in self.precision_choice.items() if k in PRECISION_KEYS},
            "heldout_tokens": int(self.heldout[:, 1:].numel()),
            "initial_val_loss": val_losses[0] if val_losses else float("nan"),
            "final_val_loss": val_losses[-1] if val_losses and not self.diverged else float("nan"),
            "best_val_loss": min(finite_val) if finite_val else float("nan"),
            "best_step": _best_step(curves["val"]),
            "stopped_early": bool(self.early and self.early.should_stop),
            "final_train_loss": curves["train"][-1]["loss"] if curves["train"] else float("nan"),
            "diverged": self.diverged,
        }
        bytes_per_token = heldout_bytes_per_token(self.heldout, self.base_dir)
        for key in ("initial_val_loss", "final_val_loss", "best_val_loss"):
            metrics[key.replace("_loss", "_bpb")] = bits_per_byte(metrics[key], bytes_per_token)
        return metrics

    def log_metrics(self, metrics: dict) -> None:
        self.curve_log.close(metrics)

    def teardown(self):
        """The trained model as a caller uses it: unwrapped, uncompiled, unfused, merged, set up for inference."""
        self.accelerator.wait_for_everyone()
        model = self.accelerator.unwrap_model(self.loss_model).model
        uncompile(self.compiled)
        unfuse(self.fused)
        if self.cfg.method == "lora":
            model = model.merge_and_unload()  # a plain model that loads without peft
        model.config.use_cache = True
        model.set_attn_implementation(self.saved_attention)  # the choice above was for training speed only
        return model


def _best_step(val_curve: list[dict]) -> int | None:
    finite = [row for row in val_curve if math.isfinite(row["val_loss"])]
    return int(min(finite, key=lambda row: row["val_loss"])["step"]) if finite else None


def content_hash_tensor(blocks: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(blocks.numpy().tobytes()).hexdigest()[:16]
