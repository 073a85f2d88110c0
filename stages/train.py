"""train stage: fine-tune the base model on the tokenized corpus -> models/finetuned, metrics, curves."""

from pathlib import Path

import typer

from transferlm.cli import run_stage
from transferlm.params import load_params
from transferlm.train import train_and_save

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    params = load_params(params_file)
    train_and_save(
        params.train,
        data_dir=Path("data/tokenized"),
        base_dir=Path("models/base"),
        metrics_out=Path("metrics/train.json"),
        plots_out=Path("plots/train"),
        model_out=Path("models/finetuned"),
        checkpoint_dir=Path("checkpoints/train"),
        run_name="train",
        card_title=f"{params.model.base} fine-tuned by transferlm",
        corpus=[s.source for s in params.fetch.corpus],
        base_name=params.model.base,
    )


if __name__ == "__main__":
    run_stage(app)
