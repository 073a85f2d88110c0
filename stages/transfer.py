"""transfer stage: what pretraining buys, measured -> metrics/frontier.json and plots/frontier/: the
frontier, compute bounds, seed spreads, data efficiency, epochs and time.

Reads only what the training stages wrote (run folders, the study's summary), so it imports no training code.
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, curves, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import dump_json, staged_outputs, write_csv
from transferlm.core.params import load_params
from transferlm.frontier import savings
from transferlm.lm.heldout import bits_per_byte

app = typer.Typer(add_completion=False, help=__doc__)


def _best(m: dict, block: int) -> dict:
    """A run's point on the data-efficiency curve: its best held-out loss and the training tokens it had."""
    return {"loss": m["best_val_loss"], "tokens": m["train_blocks"] * block}


@app.command(help=__doc__)
def main(params_file: Path = PARAMS_FILE) -> None:
    """metrics/frontier.json and plots/frontier/: frontier, bounds, seed spreads, data efficiency, epochs, time."""
    params = load_params(params_file)
    block = artifacts.block_size()
    size = artifacts.best_scratch_size(params.scratch.sizes)
    finetune = artifacts.run_metrics(paths.FINETUNE_RUN)
    ft_curve = curves.read_curve(paths.FINETUNE_RUN, "val")
    # The comparison budget: the fine-tune's FLOPs after scratch.compare_steps steps; its curve up to there.
    compare_flops = params.scratch.compare_steps * finetune["tokens"] / finetune["steps"] * finetune["flops_per_token"]
    ft_compare = [r for r in ft_curve if r["flops"] <= compare_flops * (1 + 1e-9)]
    folders = [paths.LADDER / s for s in params.scratch.sizes] + [paths.SCRATCH_LONG]
    folders += [paths.SCRATCH_SEEDS / str(s) for s in params.scratch.seeds]
    scratch_runs = {f: artifacts.run_metrics(f) for f in folders}
    scratch_curves = [curves.read_curve(f, "val") for f in folders]
    saved = savings.compute_saved(scratch_curves, ft_compare, compare_flops)

    study_summary = artifacts.study_summary()
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
            points[f] = _best(artifacts.run_metrics(folder), block)
            epochs.setdefault(str(f), {})[model] = savings.epochs_summary(
                artifacts.run_metrics(folder), curves.read_curve(folder, "val"), block)
    best_scratch_loss = min(m["best_val_loss"] for m in scratch_runs.values())
    bytes_per_token = artifacts.heldout_bytes_per_token()
    zero = artifacts.zero_shot_loss()

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
        "pretraining": savings.pretraining_compute(params.model.base),
        "seeds": {
            "finetune": None if finalist is None else {
                k: finalist[k] for k in ("mean", "std", "min", "max", "seeds", "steps")},
            "best_scratch": savings.spread(best_scratch),
        },
        "data_efficiency": savings.data_efficiency(ft_fracs, sc_fracs),
        "epochs": epochs,
        "time": {
            "best_scratch_loss": best_scratch_loss,
            "finetune_seconds_to_pass_it": savings.time_to_pass(ft_curve, best_scratch_loss),
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
