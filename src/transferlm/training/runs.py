"""Every training run of the pipeline, built from params: the fine-tune, the from-scratch ladder, the
optimizer x lr study's grid points and lr range tests, and the data-fraction runs.

One place decides what each run is, so a stage only picks which run to make and where to write it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from transferlm.core import artifacts, paths
from transferlm.core.errors import InputError
from transferlm.core.params import AUTO, Params, Shape, TrainParams
from transferlm.training.loop import Run

SAMPLE_TOKENS = 24  # text logged at each evaluation of the fine-tune and the ladder (samples while training)


def resolve_train(train: TrainParams, recommended: Path = paths.RECOMMENDED) -> TrainParams:
    """train.* with `auto` optimizer/lr replaced by the study's recommendation (recommended.json)."""
    if not train.is_auto:
        return train
    choice = artifacts.recommended(recommended)
    return dataclasses.replace(
        train,
        optimizer=choice["optimizer"] if train.optimizer == AUTO else train.optimizer,
        lr=float(choice["lr"]) if train.lr == AUTO else train.lr,
    )


def derived(train: TrainParams, **changes) -> TrainParams:
    """Settings for a study or scratch run: the fine-tune's batch, schedule, regularisation and precision,
    with `changes` (optimizer, lr, steps...). Only these fields are read, so dvc.yaml lists exactly them."""
    keep = ("batch_size", "grad_accum", "lr_schedule", "weight_decay", "max_grad_norm", "precision")
    return TrainParams(**{k: getattr(train, k) for k in keep if k not in changes}, **changes)


def finetune(params: Params, *, initial_loss: float | None = None) -> Run:
    """The fine-tune: train.* (with `auto` resolved), train.max_steps, early-stopped on its held-out loss
    (train.patience), measured every train.eval_every steps and at the comparison budget that the scratch
    runs are held against (scratch.compare_steps)."""
    train = resolve_train(params.train)
    evals = {*range(train.eval_every, train.max_steps, train.eval_every), params.scratch.compare_steps}
    return Run(name="finetune", train=train, initial_loss=initial_loss, patience=train.patience,
               eval_steps=tuple(sorted(evals)), sample_tokens=SAMPLE_TOKENS)


def epochs_run(train: TrainParams, *, name: str, fraction: float, epochs: int, patience: int,
               data_dir: Path = paths.TOKENIZED, **run_fields) -> Run:
    """A run on `fraction` of the training split for up to `epochs` epochs, a held-out loss after each one,
    early-stopped after `patience` epochs without a new best. `train` gives optimizer, lr, batch and seed."""
    from transferlm.lm import blocks as data

    blocks = len(data.training_blocks(data_dir, fraction, train.seed))
    world = int(os.environ.get("WORLD_SIZE", "1"))  # every process takes its share of each global batch
    per_epoch = max(1, math.ceil(blocks / (train.batch_size * train.grad_accum * world)))
    steps = epochs * per_epoch
    cfg = dataclasses.replace(train, max_steps=steps, warmup_steps=min(train.warmup_steps, per_epoch),
                              save_every=0)
    return Run(name=name, train=cfg, data_fraction=fraction, patience=patience,
               eval_steps=tuple(per_epoch * (e + 1) for e in range(epochs)), **run_fields)


def batch_size_run(params: Params, train: TrainParams, batch_size: int, *, initial_loss: float | None = None) -> Run:
    """The fine-tune's optimizer at another batch size, on study.batch_blocks blocks in all (equal tokens).

    The lr is the study's (found at train.batch_size), scaled with the batch: by the square root of the
    ratio for adaptive optimizers (Malladi et al. 2022, "On the SDEs and scaling rules for adaptive
    gradient algorithms"), linearly for SGD (Goyal et al. 2017).
    """
    steps = max(1, round(params.study.batch_blocks / batch_size))
    power = 1.0 if train.optimizer == "sgd" else 0.5
    lr = train.lr * (batch_size / train.batch_size) ** power
    cfg = dataclasses.replace(train, batch_size=batch_size, grad_accum=1, lr=min(lr, 9.99), max_steps=steps,
                              warmup_steps=min(train.warmup_steps, steps // 4), save_every=0)
    evals = tuple(sorted({max(1, round(steps * (i + 1) / 4)) for i in range(4)}))
    return Run(name=f"batch-{batch_size}", train=cfg, eval_steps=evals, initial_loss=initial_loss)


def lr_scaling_rule(optimizer: str) -> str:
    return "linear" if optimizer == "sgd" else "square root"


def grid_point(params: Params, optimizer: str, lr: float, steps: int, *, seed: int | None = None,
               initial_loss: float | None = None) -> Run:
    """A study run: the fine-tune's settings with this optimizer and lr, `steps` long, one held-out loss at the end."""
    cfg = derived(
        params.train, optimizer=optimizer, lr=lr, max_steps=steps,
        warmup_steps=min(params.train.warmup_steps, steps // 4),
        seed=params.train.seed if seed is None else seed, save_every=0,
    )
    return Run(name=paths.point_name(optimizer, lr, seed), train=cfg, diverge_factor=params.study.diverge_factor,
               eval_steps=(steps,), initial_loss=initial_loss)


def lr_find(params: Params, optimizer: str, initial_loss: float | None = None) -> Run:
    """The lr range test: one short run, lr rising exponentially, no warm-up, stopped once the loss blows up."""
    study = params.study
    cfg = derived(params.train, optimizer=optimizer, lr=study.lr_find_min, max_steps=study.lr_find_steps,
                  warmup_steps=0, save_every=0, lr_schedule="constant", seed=params.train.seed)
    # Stopped once a step's loss doubles its first: a fine-tune's loss (~4 nats) never gets there by noise,
    # and the steps past it would only pay for lrs that the reading cuts off anyway.
    return Run(name=f"lr_find-{optimizer}", train=cfg, lr_ramp=(study.lr_find_min, study.lr_find_max),
               diverge_factor=2.0, eval_steps=(study.lr_find_steps,), initial_loss=initial_loss)


# ------------------------------------------------------------------------------------ from-scratch ladder


def shape_of(params: Params, size: str) -> Shape:
    shape = params.scratch.shapes.get(size)
    if shape is None:
        raise InputError(f"scratch.shapes: no size {size!r}; sizes: {', '.join(params.scratch.shapes)}")
    return shape


def parameter_count(base_dir: Path, shape: Shape | None) -> tuple[int, object]:
    """(parameters, config) of the base model's family at `shape`, counted without allocating weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from transferlm.lm.models import scratch_config

    config = scratch_config(base_dir, shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), config


def block_size(data_dir: Path) -> int:
    from transferlm.lm import blocks as data

    return int(data.load_split(data_dir, "validation").shape[1])


def scratch(params: Params, size: str, *, budget: float, seed: int | None = None, fraction: float = 1.0,
            name: str | None = None, sample_tokens: int = 0, base_dir: Path = paths.BASE_MODEL,
            data_dir: Path = paths.TOKENIZED) -> Run:
    """Ladder size `size` from random weights, trained for `budget` x the comparison budget (the fine-tune's
    FLOPs after scratch.compare_steps steps)."""
    from transferlm.training.optim import flops_per_token

    shape = shape_of(params, size)
    block = block_size(data_dir)
    tokens_per_step = params.train.batch_size * params.train.grad_accum * block
    base_n, base_config = parameter_count(base_dir, None)
    compare_flops = params.scratch.compare_steps * tokens_per_step * flops_per_token(base_config, block, base_n)
    n, config = parameter_count(base_dir, shape)
    steps = max(1, round(budget * compare_flops / (tokens_per_step * flops_per_token(config, block, n))))
    evals = params.scratch.evals
    # Checkpoints as often as the fine-tune's, in wall-clock terms (the same FLOPs between saves).
    save_every = params.train.save_every * steps // params.scratch.compare_steps
    cfg = derived(
        params.train, optimizer=params.scratch.optimizer, lr=shape.lr, max_steps=steps,
        warmup_steps=min(params.scratch.warmup_steps, steps // 4), seed=params.train.seed if seed is None else seed,
        save_every=save_every,
    )
    eval_steps = tuple(sorted({max(1, round(steps * (i + 1) / evals)) for i in range(evals)}))
    return Run(name=name or f"scratch-{size}", train=cfg, init="scratch", shape=shape, data_fraction=fraction,
               eval_steps=eval_steps, sample_tokens=sample_tokens)


# ------------------------------------------------------------------------------------------- running


def execute(run: Run, params: Params, out_dir: Path, *, model_out: Path | None = None, card=None,
            checkpoints: bool = True) -> dict:
    """Train `run`, logging its curves and metrics to `out_dir` as it goes, then write the model if asked.

    The run folder fills while the run goes (so that `dvc exp show` follows it) and is removed if the run
    fails; a kill leaves it partial, and DVC reruns the stage (resuming from the checkpoint). The model
    is written all-or-nothing; the checkpoints are removed only after it. `card(metrics) -> ModelCard`
    makes the model card once the metrics are known.
    """
    import shutil

    from accelerate import PartialState

    from transferlm.core.outputs import staged_outputs
    from transferlm.lm import blocks as data
    from transferlm.lm import models
    from transferlm.training.loop import train

    checkpoint_dir = paths.CHECKPOINTS / run.name if checkpoints else None
    heldout = data.heldout_blocks(paths.TOKENIZED, params.evaluate.eval_blocks, params.evaluate.seed)
    try:
        model, result = train(run, data_dir=paths.TOKENIZED, base_dir=paths.BASE_MODEL, heldout=heldout,
                              checkpoint_dir=checkpoint_dir, log_dir=out_dir)
    except BaseException:
        if PartialState().is_main_process:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    # Only once train() has set up its Accelerator: a PartialState made first, with its defaults, would
    # keep each process of a CPU `accelerate launch` from joining the others.
    if not PartialState().is_main_process:  # under `accelerate launch`, one process writes
        return result.metrics
    if model_out:
        with staged_outputs(model_out) as (tmp,):
            models.save_model(model, paths.BASE_MODEL, tmp, card(result.metrics) if card else None)
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result.metrics
