"""train stage: fine-tune the base model on the tokenized corpus -> models/finetuned and metrics/finetune/.

With `train.optimizer: auto` / `train.lr: auto` (the defaults) the optimizer and lr are the ones the
optimizer x lr study recommends (metrics/study/recommended.json).
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.params import load_params
from transferlm.lm import cards
from transferlm.training import runs

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(params_file: Path = PARAMS_FILE) -> None:
    params = load_params(params_file)
    run = runs.finetune(params, initial_loss=artifacts.zero_shot_loss())
    corpus = [s.source for s in params.fetch.corpus]

    def card(metrics: dict):
        return cards.finetuned_card(
            title=f"{params.model.base} fine-tuned by transferlm", base=params.model.base, corpus=corpus,
            train_params=vars(run.train), metrics=metrics, perplexity=cards.perplexity_of(metrics), init="pretrained",
        )

    runs.execute(run, params, paths.FINETUNE_RUN, model_out=paths.FINETUNED_MODEL, card=card)


if __name__ == "__main__":
    run_stage(app)
