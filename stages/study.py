"""study stage: which optimizer and learning rate fine-tune best, by successive halving over the grid.

    python stages/study.py grid                     # round 0: every grid point, short budget, one process
    python stages/study.py halving                  # later rounds: the best 1/eta, eta x longer
    python stages/study.py seed --seed 2            # the last round's runs with another seed
    python stages/study.py lr-find --optimizer adamw  # the lr range test of one optimizer
    python stages/study.py batch                    # the recommended optimizer at several batch sizes
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, curves, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import dump_json, staged_outputs
from transferlm.core.params import load_params
from transferlm.study import halving as study
from transferlm.study.batch import batch_size_summary
from transferlm.training import runs

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def grid(params_file: Path = PARAMS_FILE) -> None:
    """Round 0: every grid point for the first (shortest) budget of successive halving.

    One process for the whole grid: a point's few steps cost less than starting Python and torch again."""
    params = load_params(params_file)
    steps = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)[0]
    start = artifacts.zero_shot_loss()
    with staged_outputs(paths.STUDY_ROUND0) as (tmp,):
        tmp.mkdir()
        for optimizer in params.study.optimizers:
            for lr in params.study.lrs:
                run = runs.grid_point(params, optimizer, lr, steps, initial_loss=start)
                runs.execute(run, params, tmp / paths.point_name(optimizer, lr), checkpoints=False)


@app.command()
def halving(params_file: Path = PARAMS_FILE) -> None:
    """Rounds 1..study.rungs-1: each keeps the best 1/eta of the previous round and runs it eta x longer."""
    params = load_params(params_file)
    start = artifacts.zero_shot_loss()
    steps = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)
    survivors = _round0(params)
    with staged_outputs(paths.STUDY_HALVING) as (tmp,):
        tmp.mkdir()
        for k in range(1, params.study.rungs):
            survivors = study.promote(survivors, params.study.eta, start)
            results = []
            for m in survivors:
                run = runs.grid_point(params, m["optimizer"], m["lr"], steps[k], initial_loss=start)
                results.append(runs.execute(run, params, tmp / f"round{k}" / run.name, checkpoints=False))
            survivors = results
        # Picked here, where study.rungs and study.eta are params, so the seed stage needs neither.
        finalists = study.finalists(survivors, params.study.rungs, params.study.eta, start)
        dump_json(tmp / paths.STUDY_FINALISTS.name, finalists)


def _round0(params) -> list[dict]:
    """Round 0 of the grid in params (not the folders of points that have left it)."""
    return study.read_runs(paths.STUDY_ROUND0, paths.grid_names(params.study.optimizers, params.study.lrs))


@app.command()
def seed(seed: int = typer.Option(..., help="The seed (of batch order)."), params_file: Path = PARAMS_FILE) -> None:
    """The last round's runs again with another seed: their spread tells a real difference from noise."""
    params = load_params(params_file)
    with staged_outputs(paths.STUDY_SEEDS / str(seed)) as (tmp,):
        tmp.mkdir()
        for m in artifacts.read_json(paths.STUDY_FINALISTS, "study_halving"):
            run = runs.grid_point(params, m["optimizer"], m["lr"], m["steps"], seed=seed,
                                  initial_loss=artifacts.zero_shot_loss())
            runs.execute(run, params, tmp / run.name, checkpoints=False)


@app.command(name="lr-find")
def lr_find(optimizer: str = typer.Option(..., help="One of study.optimizers."),
            params_file: Path = PARAMS_FILE) -> None:
    """The lr range test: one short run with the lr rising exponentially; loss against lr."""
    params = load_params(params_file)
    run = runs.lr_find(params, optimizer, initial_loss=artifacts.zero_shot_loss())
    run.train.validate()
    runs.execute(run, params, paths.STUDY_LR_FIND / optimizer, checkpoints=False)


@app.command()
def batch(params_file: Path = PARAMS_FILE) -> None:
    """The fine-tune's optimizer and lr at each of study.batch_sizes, on the same number of training tokens."""
    params = load_params(params_file)
    train = runs.resolve_train(params.train)
    start = artifacts.zero_shot_loss()
    with staged_outputs(paths.STUDY_BATCH) as (tmp,):
        tmp.mkdir()
        results = []
        for size in params.study.batch_sizes:
            run = runs.batch_size_run(params, train, size, initial_loss=start)
            metrics = runs.execute(run, params, tmp / str(size), checkpoints=False)
            results.append({**metrics, "batch_size": size, "val_curve": curves.read_curve(tmp / str(size), "val")})
        dump_json(tmp / paths.STUDY_BATCH_SUMMARY.name, batch_size_summary(
            results, rule=runs.lr_scaling_rule(train.optimizer), base_batch=train.batch_size, base_lr=train.lr))


if __name__ == "__main__":
    run_stage(app)
