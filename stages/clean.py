"""clean stage: data/raw -> data/clean/documents.jsonl + metrics/clean.json (rules in transferlm.data.clean)."""

from pathlib import Path

import typer

from transferlm.core import paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.errors import InputError
from transferlm.core.outputs import dump_json, staged_outputs
from transferlm.core.params import load_params
from transferlm.data.clean import clean_corpus, read_raw_documents, write_documents

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(
    params_file: Path = PARAMS_FILE,
    raw_dir: Path = typer.Option(paths.RAW, help="The fetched corpus (with manifest.json)."),
    documents_file: Path = typer.Option(paths.CLEAN_DOCUMENTS,
                                        help="Where the cleaned documents go (JSON lines)."),
    metrics_file: Path = typer.Option(paths.CLEAN_METRICS, help="What each cleaning rule changed."),
) -> None:
    params = load_params(params_file).clean
    docs = read_raw_documents(raw_dir)
    kept, metrics = clean_corpus(docs, params)
    if not kept:
        raise InputError(f"{raw_dir}: no document left after cleaning (all dropped; see clean.min_chars)")
    with staged_outputs(documents_file, metrics_file) as (tmp_documents, tmp_metrics):
        write_documents(tmp_documents, kept)
        dump_json(tmp_metrics, metrics)


if __name__ == "__main__":
    run_stage(app)
