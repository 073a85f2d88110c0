"""study_summary stage: metrics/study.json (grid, rounds, finalists, ties, per-optimizer findings), the
recommended optimizer and lr (metrics/study/recommended.json), and plots/study/.

Reads only what the study's training stages wrote, so it imports no training code.
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, curves, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import dump_json, staged_outputs, write_csv
from transferlm.core.params import load_params
from transferlm.study import halving as study
from transferlm.study import lr_find

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(params_file: Path = PARAMS_FILE) -> None:
    params = load_params(params_file)
    start = artifacts.zero_shot_loss()
    round0 = study.read_runs(paths.STUDY_ROUND0, paths.grid_names(params.study.optimizers, params.study.lrs))
    rounds = [study.read_runs(paths.STUDY_HALVING / f"round{k}") for k in range(1, params.study.rungs)]
    seed_runs = [m for s in params.study.seeds for m in study.read_runs(paths.STUDY_SEEDS / str(s))]
    finds, find_rows = {}, []
    for optimizer in params.study.optimizers:
        curve = curves.read_curve(paths.STUDY_LR_FIND / optimizer, "train")
        finds[optimizer] = lr_find.lr_find_suggestion([r["lr"] for r in curve], [r["loss"] for r in curve])
        smoothed = finds[optimizer].pop("smoothed")
        for r, smooth in zip(curve, smoothed, strict=False):  # the smoothed curve ends where the loss blew up
            find_rows.append({"optimizer": optimizer, "lr": r["lr"], "loss": r["loss"], "smoothed": smooth})
    summary = study.summarize(round0, rounds, seed_runs, finds, start, params.study.eta)
    summary["rung_steps"] = study.rung_steps(params.study.max_steps, params.study.rungs, params.study.eta)
    summary["lr_find"] = finds
    plots = paths.PLOTS / "study"
    with staged_outputs(paths.STUDY_SUMMARY, paths.RECOMMENDED, plots) as (summary_tmp, rec_tmp, plots_tmp):
        dump_json(summary_tmp, summary)
        dump_json(rec_tmp, summary["recommended"])
        plots_tmp.mkdir()
        write_csv(plots_tmp / "grid.csv", [
            {"optimizer": r["optimizer"], "lr": r["lr"], "final_val_loss": r["final_val_loss"], "status": r["status"]}
            for r in summary["grid"] if r["status"] != study.DIVERGED])  # a diverged run has no loss to draw
        write_csv(plots_tmp / "lr_find.csv", find_rows)


if __name__ == "__main__":
    run_stage(app)
