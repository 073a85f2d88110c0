"""Evaluate the three models: held-out perplexity, sample measures, a blind review page; score reviews.

    python stages/evaluate.py run                                   # metrics/eval.json, reports/review/, key
    python stages/evaluate.py score reviews/alice.json [reviews/bob.json ...] [--key data/review_key.csv]
"""

import json
import logging
import math
from pathlib import Path

import typer

from transferlm.core import artifacts, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import staged_outputs, write_json
from transferlm.core.params import load_params
from transferlm.data.clean import read_documents
from transferlm.data.layout import DOCUMENTS, corpus_layout
from transferlm.evaluate.measures import (
    load_tokenized,
    perplexity_entry,
    pick_criteria,
    read_samples,
    sample_measures,
    samples_by_model,
    train_ngram_hashes,
)
from transferlm.evaluate.review import (
    KEY_COLUMNS,
    build_pairs,
    build_review,
    format_scores,
    score,
    to_csv,
    write_review,
)
from transferlm.evaluate.review_stats import REFERENCE
from transferlm.lm import blocks as data
from transferlm.lm.device import pick_device, resolve_precision
from transferlm.lm.heldout import bits_per_byte, heldout_bytes_per_token, heldout_loss
from transferlm.lm.models import check_model_dir, load_for_inference, load_tokenizer

log = logging.getLogger("transferlm.evaluate.measures")
app = typer.Typer(add_completion=False)


@app.command()
def run(params_file: Path = PARAMS_FILE) -> None:
    """Perplexity and sample measures into metrics/eval.json; the blind review sheet and its key."""
    all_params = load_params(params_file)
    params = all_params.evaluate
    compared = artifacts.compared_models(all_params.scratch.sizes)
    for path in compared.values():  # fail before any slow work
        check_model_dir(path)
    samples = read_samples(paths.SAMPLES_JSONL)
    # The page shows the review's own samples, never the labelled ones in reports/ (transferlm.evaluate.generate).
    review_samples = read_samples(paths.REVIEW_SAMPLES, (*paths.MODELS, REFERENCE))
    tokenized = load_tokenized(paths.TOKENIZED)
    # The layout the corpus was cleaned into: what the format rate checks and `auto` criteria are picked by.
    layout, reading = corpus_layout(doc.text for doc in read_documents(DOCUMENTS))
    log.info("corpus layout: %s (%s)", layout, reading)

    # The same held-out blocks, loss function and precision as the training curves: one loss per model.
    blocks = data.heldout_blocks(paths.TOKENIZED, params.eval_blocks, params.seed)
    perplexity = {}
    for name, path in compared.items():
        model, _ = load_for_inference(path)
        precision = resolve_precision(all_params.train.precision, pick_device(), hidden_size=model.config.hidden_size,
                                      intermediate_size=getattr(model.config, "intermediate_size", None),
                                      tokens=params.batch_size * blocks.shape[1])
        loss, tokens = heldout_loss(model, blocks, params.batch_size, precision)
        del model  # one model in memory at a time
        perplexity[name] = {**perplexity_entry(loss, tokens), "model_dir": str(path), "precision": precision,
                            "bits_per_byte": bits_per_byte(loss, heldout_bytes_per_token(blocks, paths.BASE_MODEL))}
        log.info("%s: held-out loss %.4f, perplexity %.2f, %d tokens", name, loss, math.exp(loss), tokens)

    # All three models share the base tokenizer, so copy_rate counts the same tokens for each.
    tokenizer = load_tokenizer(paths.BASE_MODEL)
    train_hashes = train_ngram_hashes(tokenized, params.copy_ngram)
    # The held-out text's own measures (it is only in the review samples): the target each model should be near.
    reference = [row for row in review_samples if row["model"] == REFERENCE]
    measures = {
        name: sample_measures(rows, tokenizer, train_hashes, params.copy_ngram, layout)
        for name, rows in (samples_by_model(samples) | ({REFERENCE: reference} if reference else {})).items()
    }
    criteria, criteria_why = pick_criteria(params.criteria(), layout, reading)
    sheet, key = build_review(review_samples, params.seed, criteria)
    pairs = build_pairs(key, params.seed)

    with staged_outputs(paths.EVAL_METRICS, paths.REVIEW_PAGE, paths.REVIEW_KEY) as (eval_tmp, review_tmp, key_tmp):
        metrics = {"perplexity": perplexity, "samples": measures, "copy_ngram": params.copy_ngram,
                   "layout": {"name": layout, "reading": reading}, "review_criteria": criteria_why}
        eval_tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_review(review_tmp, sheet, pairs, criteria, note=criteria_why)
        key_tmp.write_text(to_csv(key, KEY_COLUMNS), encoding="utf-8")


@app.command("score")
def score_reviews(
    files: list[Path] = typer.Argument(..., help="Review page exports (.json) or filled sheets (.csv): reviews/*"),
    key: Path = typer.Option(paths.REVIEW_KEY, "--key", help="The key mapping sample ids to models."),
) -> None:
    """Means with intervals, win rates and a ranking over all files; printed and written to metrics/review.json."""
    scores = score(files, key)
    print(format_scores(scores))
    write_json(paths.REVIEW_METRICS, scores)


if __name__ == "__main__":
    run_stage(app)
