"""scratch stage: the base model's architecture from random weights, trained on the fine-tune's budget.

Same data, tokenizer, batch and step budget as `train`; its own optimizer, lr and warm-up (a model
learning from nothing wants a larger lr). Its curves go next to the fine-tune's in `dvc plots`.
"""

import dataclasses
from pathlib import Path

import typer

from transferlm.cli import run_stage
from transferlm.params import load_params
from transferlm.train import train_and_save

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    params = load_params(params_file)
    cfg = dataclasses.replace(
        params.train,
        init="scratch",
        method="full",
        optimizer=params.scratch.optimizer,
        lr=params.scratch.lr,
        warmup_steps=params.scratch.warmup_steps,
    )
    train_and_save(
        cfg,
        data_dir=Path("data/tokenized"),
        base_dir=Path("models/base"),
        metrics_out=Path("metrics/scratch.json"),
        plots_out=Path("plots/scratch"),
        model_out=Path("models/scratch"),
        checkpoint_dir=Path("checkpoints/scratch"),
        run_name="scratch",
        card_title=f"{params.model.base} architecture trained from scratch by transferlm",
        corpus=[s.source for s in params.fetch.corpus],
        base_name=f"{params.model.base} (config only, random init)",
    )


if __name__ == "__main__":
    run_stage(app)
