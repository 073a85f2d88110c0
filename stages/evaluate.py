"""Evaluate the three models: held-out perplexity, sample measures, a blind review sheet; score a filled sheet.

    python stages/evaluate.py run                                   # metrics/eval.json, reports/review/, key
    python stages/evaluate.py score reports/review/sheet.csv [--key data/review_key.csv]
"""

import json
import logging
import math
from pathlib import Path

import typer
from transformers import AutoTokenizer

from transferlm.cli import run_stage
from transferlm.evaluate import (
    load_tokenized,
    mean_loss,
    perplexity_entry,
    read_samples,
    sample_measures,
    samples_by_model,
    train_ngram_hashes,
    validation_blocks,
)
from transferlm.generate import MODEL_DIRS, check_model_dir, load_model
from transferlm.outputs import staged_outputs, write_json
from transferlm.params import load_params
from transferlm.review import KEY_COLUMNS, build_review, format_scores, score_sheet, to_csv, write_review

TOKENIZED = Path("data/tokenized")
SAMPLES = Path("reports/samples.jsonl")
EVAL_JSON = Path("metrics/eval.json")
REVIEW_DIR = Path("reports/review")
REVIEW_KEY = Path("data/review_key.csv")
REVIEW_JSON = Path("metrics/review.json")

log = logging.getLogger("transferlm.evaluate")
app = typer.Typer(add_completion=False)


@app.command()
def run(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """Perplexity and sample measures into metrics/eval.json; the blind review sheet and its key."""
    params = load_params(params_file).evaluate
    for path in MODEL_DIRS.values():  # fail before any slow work
        check_model_dir(path)
    samples = read_samples(SAMPLES)
    data = load_tokenized(TOKENIZED)

    blocks = validation_blocks(data, params.eval_blocks, params.seed)
    perplexity = {}
    for name, path in MODEL_DIRS.items():
        model, _ = load_model(path)
        loss, tokens = mean_loss(model, blocks, params.batch_size)
        del model  # one model in memory at a time
        perplexity[name] = perplexity_entry(loss, tokens)
        log.info("%s: validation loss %.4f, perplexity %.2f, %d tokens", name, loss, math.exp(loss), tokens)

    # All three models share the base tokenizer, so copy_rate counts the same tokens for each.
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIRS["base"])
    train_hashes = train_ngram_hashes(data, params.copy_ngram)
    measures = {
        name: sample_measures(rows, tokenizer, train_hashes, params.copy_ngram)
        for name, rows in samples_by_model(samples).items()
    }
    sheet, key = build_review(samples, params.seed)

    with staged_outputs(EVAL_JSON, REVIEW_DIR, REVIEW_KEY) as (eval_tmp, review_tmp, key_tmp):
        metrics = {"perplexity": perplexity, "samples": measures, "copy_ngram": params.copy_ngram}
        eval_tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_review(review_tmp, sheet)
        key_tmp.write_text(to_csv(key, KEY_COLUMNS), encoding="utf-8")


@app.command()
def score(
    sheet: Path = typer.Argument(..., help="A filled review sheet (reports/review/sheet.csv)."),
    key: Path = typer.Option(REVIEW_KEY, "--key", help="The key mapping sample ids to models."),
) -> None:
    """Mean rating per model and criterion from a filled sheet; printed and written to metrics/review.json."""
    scores = score_sheet(sheet, key)
    print(format_scores(scores))
    write_json(REVIEW_JSON, scores)


if __name__ == "__main__":
    run_stage(app)
