"""transfer stage: what pretraining buys, measured.

    python stages/transfer.py fraction --fraction 0.1   # fine-tune and the best scratch size on 10% of the data
    python stages/transfer.py summarize                 # metrics/frontier.json: compute saved, seeds, data efficiency
"""

import json
from pathlib import Path

import typer

from transferlm import curves, paths, runs, transfer
from transferlm.cli import run_stage
from transferlm.outputs import dump_json, staged_outputs, write_csv
from transferlm.params import load_params

app = typer.Typer(add_completion=False, help=__doc__)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file.")


@app.command()
def fraction(fraction: float = typer.Option(..., help="One of study.fractions."), params_file: Path = PARAMS) -> None:
    """The fine-tune and the ladder's best size, each trained on `fraction` of the training split."""
    params = load_params(params_file)
    train = runs.resolve_train(params.train)
    size = runs.best_scratch_size(params)
    with staged_outputs(paths.FRACTIONS / str(fraction)) as (tmp,):
        tmp.mkdir()
        ft = runs.finetune(train, name=f"finetune-{fraction}", fraction=fraction, initial_loss=runs.zero_shot_loss())
        runs.execute(ft, params, tmp / "finetune", checkpoints=False)
        sc = runs.scratch(params, size, budget=params.scratch.budget, fraction=fraction,
                          name=f"scratch-{size}-{fraction}")
        runs.execute(sc, params, tmp / "scratch", checkpoints=False)


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _available(m: dict, block: int) -> dict:
    return {**m, "train_tokens_available": m["train_blocks"] * block}


@app.command()
def summarize(params_file: Path = PARAMS) -> None:
    """metrics/frontier.json and plots/frontier/: frontier, bounds, seed spreads, data efficiency."""
    params = load_params(params_file)
    block = runs.block_size(paths.TOKENIZED)
    size = runs.best_scratch_size(params)
    finetune = _metrics(paths.FINETUNE_RUN)
    ft_curve = curves.read_curve(paths.FINETUNE_RUN, "val")
    folders = [paths.LADDER / s for s in params.scratch.sizes] + [paths.SCRATCH_LONG]
    folders += [paths.SCRATCH_SEEDS / str(s) for s in params.scratch.seeds]
    scratch_runs = {f: _metrics(f) for f in folders}
    scratch_curves = [curves.read_curve(f, "val") for f in folders]
    saved = transfer.compute_saved(scratch_curves, ft_curve, finetune["flops"])

    study_summary = json.loads((paths.METRICS / "study.json").read_text(encoding="utf-8"))
    key = f"{finetune['optimizer']}-{finetune['lr']}"
    finalist = study_summary["finalists"].get(key)
    best_scratch = [scratch_runs[paths.LADDER / size]] + [scratch_runs[paths.SCRATCH_SEEDS / str(s)]
                                                         for s in params.scratch.seeds]
    ft_fracs = {1.0: _available(finetune, block)}
    sc_fracs = {1.0: _available(scratch_runs[paths.LADDER / size], block)}
    for f in params.study.fractions:
        ft_fracs[f] = _available(_metrics(paths.FRACTIONS / str(f) / "finetune"), block)
        sc_fracs[f] = _available(_metrics(paths.FRACTIONS / str(f) / "scratch"), block)

    summary = {
        "zero_shot_loss": runs.zero_shot_loss(),
        "finetune": {k: finetune[k] for k in ("optimizer", "lr", "steps", "tokens", "flops", "seconds",
                                              "final_val_loss", "parameters", "precision")},
        "ladder": [{"size": s, **{k: scratch_runs[paths.LADDER / s][k] for k in (
            "parameters", "lr", "steps", "tokens", "flops", "seconds", "final_val_loss", "best_val_loss")}}
            for s in params.scratch.sizes],
        "best_scratch_size": size,
        "scratch_long": {k: scratch_runs[paths.SCRATCH_LONG][k] for k in (
            "name", "steps", "tokens", "flops", "seconds", "final_val_loss", "best_val_loss")},
        **saved,
        "pretraining": transfer.pretraining_compute(params.model.base),
        "seeds": {
            "finetune": None if finalist is None else {
                k: finalist[k] for k in ("mean", "std", "min", "max", "seeds", "steps")},
            "best_scratch": transfer.spread(best_scratch),
        },
        "data_efficiency": transfer.data_efficiency(ft_fracs, sc_fracs),
    }
    with staged_outputs(paths.FRONTIER, paths.PLOTS / "frontier") as (summary_tmp, plots_tmp):
        dump_json(summary_tmp, summary)
        plots_tmp.mkdir()
        write_csv(plots_tmp / "frontier.csv", saved["frontier"])
        write_csv(plots_tmp / "data_efficiency.csv", [
            {"fraction": r["fraction"], "tokens": r["finetune_tokens_available"], "finetune": r["finetune_loss"],
             "scratch": r["scratch_loss_same_data"]} for r in summary["data_efficiency"]])


if __name__ == "__main__":
    run_stage(app)
