"""tokenize stage: data/clean -> data/tokenized (train/validation blocks) + metrics/tokenize.json.

(Named tokenize_corpus.py, not tokenize.py: a script's folder comes first on sys.path, and a file
called tokenize.py would shadow the standard library module that Python itself imports.)
"""

from pathlib import Path

import typer

from transferlm.core import paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import dump_json, staged_outputs
from transferlm.core.params import load_params
from transferlm.data.clean import read_documents
from transferlm.data.tokenize import build_splits, check_block_size

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(
    params_file: Path = PARAMS_FILE,
    documents: Path = typer.Option(paths.CLEAN_DOCUMENTS, help="The cleaned documents."),
    model_dir: Path = typer.Option(paths.BASE_MODEL, help="The base model (its tokenizer and context length)."),
    out_dir: Path = typer.Option(paths.TOKENIZED,
                                 help="The packed train/validation blocks (a datasets DatasetDict)."),
    metrics_file: Path = typer.Option(paths.TOKENIZE_METRICS, help="Split sizes and method."),
) -> None:
    params = load_params(params_file).tokenize
    check_block_size(params.block_size, model_dir)
    docs = read_documents(documents)

    from transferlm.lm.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    splits, stats = build_splits(docs, tokenizer, params)
    with staged_outputs(out_dir, metrics_file) as (tmp_dir, tmp_metrics):
        splits.save_to_disk(str(tmp_dir))
        dump_json(tmp_metrics, stats)


if __name__ == "__main__":
    run_stage(app)
