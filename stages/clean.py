"""clean stage: data/raw -> data/clean/documents.jsonl + metrics/clean.json (rules in transferlm.clean)."""

from pathlib import Path

import typer

from transferlm.clean import clean_corpus, read_raw_documents, write_documents
from transferlm.cli import run_stage
from transferlm.errors import InputError
from transferlm.outputs import dump_json, staged_outputs
from transferlm.params import load_params

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="The params file."),
    raw_dir: Path = typer.Option(Path("data/raw"), help="The fetched corpus (with manifest.json)."),
    documents_file: Path = typer.Option(Path("data/clean/documents.jsonl"),
                                        help="Where the cleaned documents go (JSON lines)."),
    metrics_file: Path = typer.Option(Path("metrics/clean.json"), help="What each cleaning rule changed."),
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
