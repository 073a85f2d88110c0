"""Gather the corpus (fetch.corpus) into data/raw/ and the base model (model.base) into models/base/."""

from pathlib import Path

import typer

from transferlm.basemodel import load_base_model, model_summary, save_base_model
from transferlm.cli import run_stage
from transferlm.corpus import corpus_summary, gather_corpus, write_corpus
from transferlm.outputs import staged_outputs, write_json
from transferlm.params import load_params

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    params = load_params(params_file)
    # The corpus first: a bad path or URL fails in seconds, before the model download and conversion.
    documents = gather_corpus(params.fetch)
    model, tokenizer = load_base_model(params.model.base, params.fetch.timeout_s)
    with staged_outputs("data/raw", "models/base", "metrics/fetch.json") as (raw_tmp, model_tmp, metrics_tmp):
        manifest = write_corpus(documents, raw_tmp)
        save_base_model(model, tokenizer, model_tmp)
        write_json(metrics_tmp, {"corpus": corpus_summary(manifest), "model": model_summary(model, params.model.base)})


if __name__ == "__main__":
    run_stage(app)
