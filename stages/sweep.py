"""sweep stage: `run` trains one optimizer x lr grid point briefly; `summarize` tabulates the grid.

dvc.yaml's matrix stage calls `run` once per grid point (sweep@adamw-0.0003, ...), then sweep_summary
calls `summarize`. Runs keep curves and metrics, not weights.
"""

from pathlib import Path

import typer

from transferlm.cli import run_stage
from transferlm.outputs import dump_json, staged_outputs
from transferlm.params import load_params
from transferlm.sweep import run_config, run_name, summarize, write_csv
from transferlm.train import clear_checkpoints, run_training

app = typer.Typer(add_completion=False)
PARAMS = typer.Option(Path("params.yaml"), "--params")


@app.command()
def run(
    optimizer: str = typer.Option(...),
    lr: float = typer.Option(...),
    params_file: Path = PARAMS,
    sweep_dir: Path = typer.Option(Path("metrics/sweep")),
) -> None:
    params = load_params(params_file)
    cfg = run_config(params.train, params.sweep, optimizer, lr)
    cfg.validate()  # the optimizer name and lr come from the command line, not params.yaml
    name = run_name(optimizer, lr)
    checkpoints = Path("checkpoints/sweep") / name
    _, result = run_training(cfg, Path("data/tokenized"), Path("models/base"), checkpoints,
                             diverge_factor=params.sweep.diverge_factor, run_name=f"sweep {name}")
    with staged_outputs(sweep_dir / name) as (tmp,):
        result.curves.write(tmp)
        dump_json(tmp / "metrics.json", result.metrics)
    clear_checkpoints(checkpoints)


@app.command(name="summarize")
def summarize_cmd(
    params_file: Path = PARAMS,
    sweep_dir: Path = typer.Option(Path("metrics/sweep")),
    metrics_out: Path = typer.Option(Path("metrics/sweep.json")),
    plots_out: Path = typer.Option(Path("plots/sweep")),
) -> None:
    params = load_params(params_file)
    summary, best_rows, curve_rows = summarize(sweep_dir, params.sweep)
    with staged_outputs(metrics_out, plots_out) as (tmp_metrics, tmp_plots):
        dump_json(tmp_metrics, summary)
        tmp_plots.mkdir()
        write_csv(tmp_plots / "best_val_loss.csv", best_rows)
        write_csv(tmp_plots / "val_loss.csv", curve_rows)


if __name__ == "__main__":
    run_stage(app)
