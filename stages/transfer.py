"""transfer stage: what pretraining buys, measured.

    python stages/transfer.py fraction --fraction 0.1   # fine-tune and the best scratch size on 10% of the data
    python stages/transfer.py summarize                 # metrics/frontier.json: compute saved, seeds, data efficiency
"""

import json
from pathlib import Path

import typer

from transferlm import curves, paths, runs, transfer
from transferlm.cli import run_stage
from transferlm.heldout import bits_per_byte
from transferlm.outputs import dump_json, staged_outputs, write_csv
from transferlm.params import load_params

app = typer.Typer(add_completion=False, help=__doc__)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file.")


@app.command()
def fraction(fraction: float = typer.Option(..., help="One of study.fractions."), params_file: Path = PARAMS) -> None:
    """The fine-tune and the ladder's best size, each trained on `fraction` of the training split for up to
    study.epochs epochs, a held-out loss after each, early-stopped (train.patience), the best epoch kept."""
    params = load_params(params_file)
    train = runs.resolve_train(params.train)
    size = runs.best_scratch_size(params)
    epochs, patience = params.study.epochs, params.train.patience
    with staged_outputs(paths.FRACTIONS / str(fraction)) as (tmp,):
        tmp.mkdir()
        ft = runs.epochs_run(train, name=f"finetune-{fraction}", fraction=fraction, epochs=epochs,
                             patience=patience, initial_loss=runs.zero_shot_loss())
        runs.execute(ft, params, tmp / "finetune", checkpoints=False)
        ladder = runs.scratch(params, size, budget=params.scratch.budget)
        sc = runs.epochs_run(ladder.train, name=f"scratch-{size}-{fraction}", fraction=fraction, epochs=epochs,
                             patience=patience, init="scratch", shape=ladder.shape)
        runs.execute(sc, params, tmp / "scratch", checkpoints=False)


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _best(m: dict, block: int) -> dict:
    """A run's point on the data-efficiency curve: its best held-out loss and the training tokens it had."""
    return {"loss": m["best_val_loss"], "tokens": m["train_blocks"] * block}


@app.command()
def summarize(params_file: Path = PARAMS) -> None:
    """metrics/frontier.json and plots/frontier/: frontier, bounds, seed spreads, data efficiency, epochs, time."""
    params = load_params(params_file)
    block = runs.block_size(paths.TOKENIZED)
    size = runs.best_scratch_size(params)
    finetune = _metrics(paths.FINETUNE_RUN)
    ft_curve = curves.read_curve(paths.FINETUNE_RUN, "val")
    # The comparison budget: the fine-tune's FLOPs after scratch.compare_steps steps; its curve up to there.
    compare_flops = params.scratch.compare_steps * finetune["tokens"] / finetune["steps"] * finetune["flops_per_token"]
    ft_compare = [r for r in ft_curve if r["flops"] <= compare_flops * (1 + 1e-9)]
    folders = [paths.LADDER / s for s in params.scratch.sizes] + [paths.SCRATCH_LONG]
    folders += [paths.SCRATCH_SEEDS / str(s) for s in params.scratch.seeds]
    scratch_runs = {f: _metrics(f) for f in folders}
    scratch_curves = [curves.read_curve(f, "val") for f in folders]
    saved = transfer.compute_saved(scratch_curves, ft_compare, compare_flops)

    study_summary = json.loads((paths.METRICS / "study.json").read_text(encoding="utf-8"))
    key = f"{finetune['optimizer']}-{finetune['lr']}"
    finalist = study_summary["finalists"].get(key)
    best_scratch = [scratch_runs[paths.LADDER / size]] + [scratch_runs[paths.SCRATCH_SEEDS / str(s)]
                                                         for s in params.scratch.seeds]
    # Each model trained to its best on each share: early-stopped epochs on the shares; on the whole split,
    # the fine-tune's best point and the best scratch size's longest run.
    ft_fracs = {1.0: _best(finetune, block)}
    whole = [_best(scratch_runs[f], block) for f in (paths.LADDER / size, paths.SCRATCH_LONG)]
    sc_fracs = {1.0: min(whole, key=lambda p: p["loss"])}
    epochs = {}
    for f in params.study.fractions:
        for model, points in (("finetune", ft_fracs), ("scratch", sc_fracs)):
            folder = paths.FRACTIONS / str(f) / model
            points[f] = _best(_metrics(folder), block)
            epochs.setdefault(str(f), {})[model] = transfer.epochs_summary(
                _metrics(folder), curves.read_curve(folder, "val"), block)
    best_scratch_loss = min(m["best_val_loss"] for m in scratch_runs.values())
    bytes_per_token = runs.heldout_bytes_per_token()
    zero = runs.zero_shot_loss()

    summary = {
        "zero_shot_loss": zero,
        # The same held-out losses in bits per byte (tokenizer-independent: compare across base models).
        "bits_per_byte": {"bytes_per_token": bytes_per_token, **{
            name: bits_per_byte(loss, bytes_per_token) for name, loss in (
                ("zero_shot", zero), ("finetune_best", finetune["best_val_loss"]),
                ("finetune_at_compare", ft_compare[-1]["val_loss"]), ("best_scratch", best_scratch_loss))}},
        "finetune": {**{k: finetune[k] for k in ("optimizer", "lr", "steps", "tokens", "flops", "seconds",
                                                 "final_val_loss", "best_val_loss", "best_step", "stopped_early",
                                                 "parameters", "precision")},
                     "compare_steps": params.scratch.compare_steps,
                     "compare_loss": ft_compare[-1]["val_loss"]},
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
        "epochs": epochs,
        "time": {
            "best_scratch_loss": best_scratch_loss,
            "finetune_seconds_to_pass_it": transfer.time_to_pass(ft_curve, best_scratch_loss),
            "finetune_seconds": finetune["seconds"],
            "scratch_seconds": sum(m["seconds"] for m in scratch_runs.values()),
            "scratch_runs": len(scratch_runs),
        },
    }
    with staged_outputs(paths.FRONTIER, paths.PLOTS / "frontier") as (summary_tmp, plots_tmp):
        dump_json(summary_tmp, summary)
        plots_tmp.mkdir()
        write_csv(plots_tmp / "frontier.csv", saved["frontier"])
        write_csv(plots_tmp / "data_efficiency.csv", [
            {"fraction": r["fraction"], "tokens": r["finetune_tokens_available"], "finetune": r["finetune_loss"],
             "scratch": r["scratch_loss_same_data"]} for r in summary["data_efficiency"]])
        write_csv(plots_tmp / "epochs.csv", [
            {"fraction": f, "model": model, "epoch": r["epoch"], "val_loss": r["val_loss"]}
            for f, runs_ in epochs.items() for model, e in runs_.items() for r in e["curve"]])


if __name__ == "__main__":
    run_stage(app)
