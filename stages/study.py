"""study stage: which optimizer and learning rate fine-tune best, by successive halving over the grid.

    python stages/study.py grid                     # round 0: every grid point, short budget, one process
    python stages/study.py halving                  # later rounds: the best 1/eta, eta x longer
    python stages/study.py seed --seed 2            # the last round's runs with another seed
    python stages/study.py lr-find --optimizer adamw  # the lr range test of one optimizer
    python stages/study.py batch                    # the recommended optimizer at several batch sizes
    python stages/study.py summarize                # metrics/study.json and the recommendation
"""

import json
from pathlib import Path

import typer

from transferlm import curves, paths, runs, study
from transferlm.cli import run_stage
from transferlm.errors import InputError
from transferlm.outputs import dump_json, staged_outputs, write_csv
from transferlm.params import load_params

app = typer.Typer(add_completion=False, help=__doc__)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file.")
ROUND0 = paths.STUDY / "round0"
HALVING = paths.STUDY / "halving"
SEEDS = paths.STUDY / "seeds"
FINALISTS = "finalists.json"  # in HALVING: the points the seed runs repeat
LR_FIND = paths.STUDY / "lr_find"
BATCH = paths.STUDY / "batch"
BATCH_SUMMARY = "summary.json"  # in BATCH: equal tokens, equal time


@app.command()
def grid(params_file: Path = PARAMS) -> None:
    """Round 0: every grid point for the first (shortest) budget of successive halving.

    One process for the whole grid: a point's few steps cost less than starting Python and torch again."""
    params = load_params(params_file)
    steps = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)[0]
    start = runs.zero_shot_loss()
    with staged_outputs(ROUND0) as (tmp,):
        tmp.mkdir()
        for optimizer in params.study.optimizers:
            for lr in params.study.lrs:
                run = runs.grid_point(params, optimizer, lr, steps, initial_loss=start)
                runs.execute(run, params, tmp / runs.point_name(optimizer, lr), checkpoints=False)


@app.command()
def halving(params_file: Path = PARAMS) -> None:
    """Rounds 1..study.rungs-1: each keeps the best 1/eta of the previous round and runs it eta x longer."""
    params = load_params(params_file)
    start = runs.zero_shot_loss()
    steps = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)
    survivors = _round0(params)
    with staged_outputs(HALVING) as (tmp,):
        tmp.mkdir()
        for k in range(1, params.study.rungs):
            survivors = study.promote(survivors, params.study.eta, start)
            results = []
            for m in survivors:
                run = runs.grid_point(params, m["optimizer"], m["lr"], steps[k], initial_loss=start)
                results.append(runs.execute(run, params, tmp / f"round{k}" / run.name, checkpoints=False))
            survivors = results
        # Picked here, where study.rungs and study.eta are params, so the seed stage needs neither.
        dump_json(tmp / FINALISTS, study.finalists(survivors, params.study.rungs, params.study.eta, start))


def _round0(params) -> list[dict]:
    """Round 0 of the grid in params (not the folders of points that have left it)."""
    names = [runs.point_name(o, lr) for o in params.study.optimizers for lr in params.study.lrs]
    return study.read_runs(ROUND0, names)


@app.command()
def seed(seed: int = typer.Option(..., help="The seed (of batch order)."), params_file: Path = PARAMS) -> None:
    """The last round's runs again with another seed: their spread tells a real difference from noise."""
    params = load_params(params_file)
    finalists = HALVING / FINALISTS
    if not finalists.is_file():
        raise InputError(f"{finalists}: not found (run the study_halving stage first)")
    with staged_outputs(SEEDS / str(seed)) as (tmp,):
        tmp.mkdir()
        for m in json.loads(finalists.read_text(encoding="utf-8")):
            run = runs.grid_point(params, m["optimizer"], m["lr"], m["steps"], seed=seed,
                                  initial_loss=runs.zero_shot_loss())
            runs.execute(run, params, tmp / run.name, checkpoints=False)


@app.command(name="lr-find")
def lr_find(optimizer: str = typer.Option(..., help="One of study.optimizers."), params_file: Path = PARAMS) -> None:
    """The lr range test: one short run with the lr rising exponentially; loss against lr."""
    params = load_params(params_file)
    run = runs.lr_find(params, optimizer, initial_loss=runs.zero_shot_loss())
    run.train.validate()
    runs.execute(run, params, LR_FIND / optimizer, checkpoints=False)


@app.command()
def batch(params_file: Path = PARAMS) -> None:
    """The fine-tune's optimizer and lr at each of study.batch_sizes, on the same number of training tokens."""
    params = load_params(params_file)
    train = runs.resolve_train(params.train)
    start = runs.zero_shot_loss()
    with staged_outputs(BATCH) as (tmp,):
        tmp.mkdir()
        results = []
        for size in params.study.batch_sizes:
            run = runs.batch_size_run(params, train, size, initial_loss=start)
            metrics = runs.execute(run, params, tmp / str(size), checkpoints=False)
            results.append({**metrics, "batch_size": size, "val_curve": curves.read_curve(tmp / str(size), "val")})
        dump_json(tmp / BATCH_SUMMARY, study.batch_size_summary(
            results, rule=runs.lr_scaling_rule(train.optimizer), base_batch=train.batch_size, base_lr=train.lr))


@app.command()
def summarize(params_file: Path = PARAMS) -> None:
    """metrics/study.json (grid, rounds, finalists, ties, per-optimizer findings), recommended.json, plots."""
    params = load_params(params_file)
    start = runs.zero_shot_loss()
    rounds = [study.read_runs(HALVING / f"round{k}") for k in range(1, params.study.rungs)]
    seed_runs = [m for s in params.study.seeds for m in study.read_runs(SEEDS / str(s))]
    finds, find_rows = {}, []
    for optimizer in params.study.optimizers:
        curve = curves.read_curve(LR_FIND / optimizer, "train")
        finds[optimizer] = study.lr_find_suggestion([r["lr"] for r in curve], [r["loss"] for r in curve])
        smoothed = finds[optimizer].pop("smoothed")
        for r, smooth in zip(curve, smoothed, strict=False):  # the smoothed curve ends where the loss blew up
            find_rows.append({"optimizer": optimizer, "lr": r["lr"], "loss": r["loss"], "smoothed": smooth})
    summary = study.summarize(_round0(params), rounds, seed_runs, finds, start, params.study.eta)
    summary["rung_steps"] = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)
    summary["lr_find"] = finds
    plots = paths.PLOTS / "study"
    with staged_outputs(paths.METRICS / "study.json", paths.RECOMMENDED, plots) as (summary_tmp, rec_tmp, plots_tmp):
        dump_json(summary_tmp, summary)
        dump_json(rec_tmp, summary["recommended"])
        plots_tmp.mkdir()
        write_csv(plots_tmp / "grid.csv", [
            {"optimizer": r["optimizer"], "lr": r["lr"], "final_val_loss": r["final_val_loss"], "status": r["status"]}
            for r in summary["grid"] if r["status"] != study.DIVERGED])  # a diverged run has no loss to draw
        write_csv(plots_tmp / "lr_find.csv", find_rows)


if __name__ == "__main__":
    run_stage(app)
