"""fetch stage: gather the corpus (fetch.corpus) into data/raw/ and the base model (model.base) into
models/base/ (plain Hugging Face layout with a model card); what was fetched into metrics/fetch.json."""

from pathlib import Path

import typer

from transferlm.core import paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import dump_json, staged_outputs
from transferlm.core.params import load_params
from transferlm.data.basemodel import base_source_kind, load_base_model, model_summary, save_base_model
from transferlm.data.corpus import corpus_summary, gather_corpus, write_corpus
from transferlm.data.tokenize import check_enough_text

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(params_file: Path = PARAMS_FILE) -> None:
    params = load_params(params_file)
    base_source_kind(params.model.base)  # a model.base naming a missing path fails now, not after the corpus
    # The corpus first: a bad path or URL fails in seconds, before the model download and conversion.
    documents = gather_corpus(params.fetch)
    model, tokenizer = load_base_model(params.model.base, params.fetch.timeout_s)
    # A corpus too small for one block of each split fails here, not three stages later at tokenize.
    check_enough_text(documents, tokenizer, params.tokenize)
    with staged_outputs(paths.RAW, paths.BASE_MODEL, paths.FETCH_METRICS) as (raw_tmp, model_tmp, metrics_tmp):
        manifest = write_corpus(documents, raw_tmp)
        save_base_model(model, tokenizer, model_tmp, source=params.model.base)
        dump_json(metrics_tmp, {"corpus": corpus_summary(manifest), "model": model_summary(model, params.model.base)})


if __name__ == "__main__":
    run_stage(app)
