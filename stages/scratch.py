"""scratch stage: the from-scratch frontier. The base model's family at several sizes (scratch.shapes),
each trained from random weights on the same data and tokenizer as the fine-tune.

    python stages/scratch.py ladder --size m   # one size on scratch.budget x the fine-tune's FLOPs
    python stages/scratch.py long              # the best size again on scratch.long_budget x
    python stages/scratch.py seed --seed 2     # the best size with another seed (scratch.budget x)
"""

from pathlib import Path

import typer

from transferlm.core import artifacts, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.params import load_params
from transferlm.lm import cards
from transferlm.training import runs

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def ladder(size: str = typer.Option(..., help="A size named in scratch.shapes."),
           params_file: Path = PARAMS_FILE) -> None:
    """Train one ladder size on scratch.budget x the fine-tune's FLOPs; keep its weights for generate/evaluate."""
    params = load_params(params_file)
    run = runs.scratch(params, size, budget=params.scratch.budget, sample_tokens=runs.SAMPLE_TOKENS)
    corpus = [s.source for s in params.fetch.corpus]

    def card(metrics: dict):
        return cards.finetuned_card(
            title=f"{params.model.base} architecture at size {size!r}, trained from scratch by transferlm",
            base=params.model.base, corpus=corpus, train_params=vars(run.train), metrics=metrics,
            perplexity=cards.perplexity_of(metrics), init="scratch",
        )

    runs.execute(run, params, paths.LADDER / size, model_out=paths.scratch_model(size), card=card)


@app.command()
def long(params_file: Path = PARAMS_FILE) -> None:
    """Train the ladder's best size on scratch.long_budget x the fine-tune's FLOPs (curve and metrics only)."""
    params = load_params(params_file)
    size = artifacts.best_scratch_size(params.scratch.sizes)
    run = runs.scratch(params, size, budget=params.scratch.long_budget, name=f"scratch-{size}-long")
    runs.execute(run, params, paths.SCRATCH_LONG)


@app.command()
def seed(seed: int = typer.Option(..., help="The seed (of weights and batch order)."),
         params_file: Path = PARAMS_FILE) -> None:
    """Train the ladder's best size again with another seed, for the spread over seeds."""
    params = load_params(params_file)
    size = artifacts.best_scratch_size(params.scratch.sizes)
    run = runs.scratch(params, size, budget=params.scratch.budget, seed=seed, name=f"scratch-{size}-seed{seed}")
    runs.execute(run, params, paths.SCRATCH_SEEDS / str(seed))


if __name__ == "__main__":
    run_stage(app)
