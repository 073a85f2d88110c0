"""fraction stage: the fine-tune and the ladder's best size, each trained on a fraction of the training split
for up to study.epochs epochs, a held-out loss after each, early-stopped (train.patience), the best epoch kept.

    python stages/fraction.py --fraction 0.01
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import staged_outputs
from transferlm.core.params import load_params
from transferlm.training import runs

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(fraction: float = typer.Option(..., help="One of study.fractions."), params_file: Path = PARAMS_FILE) -> None:
    params = load_params(params_file)
    train = runs.resolve_train(params.train)
    size = artifacts.best_scratch_size(params.scratch.sizes)
    epochs, patience = params.study.epochs, params.train.patience
    with staged_outputs(paths.FRACTIONS / str(fraction)) as (tmp,):
        tmp.mkdir()
        ft = runs.epochs_run(train, name=f"finetune-{fraction}", fraction=fraction, epochs=epochs,
                             patience=patience, initial_loss=artifacts.zero_shot_loss())
        runs.execute(ft, params, tmp / "finetune", checkpoints=False)
        ladder = runs.scratch(params, size, budget=params.scratch.budget)
        sc = runs.epochs_run(ladder.train, name=f"scratch-{size}-{fraction}", fraction=fraction, epochs=epochs,
                             patience=patience, init="scratch", shape=ladder.shape)
        runs.execute(sc, params, tmp / "scratch", checkpoints=False)


if __name__ == "__main__":
    run_stage(app)
