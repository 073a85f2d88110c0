"""Evaluate stage: perplexity against a hand computation, the sample measures, and the stage end to end."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.stage_workspace import make_workspace, run_script
from helpers.tiny import TINY_TEXT
from transferlm.core.params import GenerateParams
from transferlm.data.clean import write_documents
from transferlm.data.corpus import Document
from transferlm.data.layout import PLAY, PROSE, SCREENPLAY, corpus_layout
from transferlm.evaluate.generate import MODELS, generate_samples, review_settings, samples_jsonl
from transferlm.evaluate.measures import (
    REVIEW_CRITERIA,
    copy_rate,
    distinct_n,
    format_rate,
    load_tokenized,
    ngram_hashes,
    pick_criteria,
    repetition_rate,
    train_ngram_hashes,
)
from transferlm.lm.blocks import heldout_blocks
from transferlm.lm.heldout import heldout_loss

BLOCK = 16


def build_tokenized(path, tokenizer) -> DatasetDict:
    """data/tokenized as the tokenize stage writes it: fixed-size blocks of the tiny corpus."""

    def blocks(text: str) -> list[list[int]]:
        ids = tokenizer(text)["input_ids"]
        return [ids[i : i + BLOCK] for i in range(0, len(ids) - BLOCK + 1, BLOCK)]

    train, validation = TINY_TEXT.split("OPHELIA:")
    data = DatasetDict(
        {
            "train": Dataset.from_dict({"input_ids": blocks(train * 3)}),
            "validation": Dataset.from_dict({"input_ids": blocks("OPHELIA:" + validation * 2)}),
        }
    )
    data.save_to_disk(str(path))
    return load_tokenized(path)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, tokenizer):
    return build_tokenized(tmp_path_factory.mktemp("data") / "tokenized", tokenizer)


# ------------------------------------------------------------------------------------------ perplexity


def test_heldout_loss_is_the_mean_over_all_tokens(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    blocks = torch.randint(0, model.config.vocab_size, (7, 12), generator=torch.Generator().manual_seed(0))
    loss, tokens = heldout_loss(model, blocks, batch_size=3)  # batches of 3, 3, 1

    with torch.no_grad():
        logprobs = model(input_ids=blocks).logits.log_softmax(dim=-1)
    token_nll = -logprobs[:, :-1].gather(-1, blocks[:, 1:, None]).squeeze(-1)  # [7, 11]
    assert tokens == 7 * 11
    assert loss == pytest.approx(token_nll.sum().item() / (7 * 11), rel=1e-5)
    # The uneven last batch makes the mean of per-batch means a different (wrong) number.
    batch_means = [token_nll[i : i + 3].mean().item() for i in range(0, 7, 3)]
    assert abs(sum(batch_means) / 3 - loss) > 1e-4


def test_heldout_blocks_whole_split_or_seeded_subset(tmp_path, tokenizer):
    build_tokenized(tmp_path / "tokenized", tokenizer)
    everything = heldout_blocks(tmp_path / "tokenized", 0, seed=1)
    assert everything.shape[1] == BLOCK and everything.dtype == torch.int64 and len(everything) > 2
    subset = heldout_blocks(tmp_path / "tokenized", 2, seed=1)
    assert torch.equal(subset, heldout_blocks(tmp_path / "tokenized", 2, seed=1))
    assert subset.shape == (2, BLOCK)
    assert all(any(torch.equal(row, full) for full in everything) for row in subset)


# ------------------------------------------------------------------------------------- sample measures


def test_distinct_n_on_known_strings():
    texts = ["the cat the cat", "The dog"]
    assert distinct_n(texts, 1) == 3 / 6  # the cat dog / the cat the cat the dog
    assert distinct_n(texts, 2) == 3 / 4  # n-grams do not run across texts
    assert distinct_n(["one"], 2) == 0.0


def test_repetition_rate_on_known_strings():
    assert repetition_rate(["a b c d a b c d"]) == 1 / 5  # abcd bcda cdab dabc abcd
    assert repetition_rate(["one two three four five"]) == 0.0
    # Averaged per text; a text without a single 4-gram is left out.
    assert repetition_rate(["a b c d a b c d", "one two three four five", "too short"]) == pytest.approx(0.1)


def test_ngram_hashes_stay_inside_rows():
    rows = np.array([[1, 2, 3], [4, 5, 6]])
    hashes = ngram_hashes(rows, 2)
    assert len(hashes) == 4
    assert ngram_hashes(np.array([3, 4]), 2)[0] not in hashes  # the pair across the row boundary
    assert ngram_hashes(np.array([5, 6]), 2)[0] in hashes


def test_copy_rate_planted_copy_and_unrelated_text(tokenized, tokenizer):
    train_hashes = train_ngram_hashes(tokenized, 4)
    train_row = tokenized["train"][1]["input_ids"]
    planted = tokenizer(tokenizer.decode(train_row[2:14]))["input_ids"]  # via text, as samples are stored
    assert copy_rate([planted], train_hashes, 4) >= 0.9
    unrelated = tokenizer("Zebras quiz 1234567 vexed jumpy fjords!")["input_ids"]
    assert copy_rate([unrelated], train_hashes, 4) == 0.0
    assert copy_rate([planted, unrelated], train_hashes, 4) == pytest.approx(
        copy_rate([planted], train_hashes, 4) * (len(planted) - 3) / (len(planted) - 3 + len(unrelated) - 3)
    )


SCREENPLAY_TEXT = """INT. BAKERY - NIGHT
[Flour everywhere. MARGO kneads.]

MARGO:
We open in an hour.

TOM:
[wiping his hands]
Then we had better hurry.

EXT. STREET - DAY
[A queue forms.]
"""


def test_corpus_layout_reads_the_cleaned_documents():
    assert corpus_layout([TINY_TEXT * 3])[0] == PLAY
    layout, reading = corpus_layout([SCREENPLAY_TEXT * 3, TINY_TEXT])
    assert layout == SCREENPLAY
    assert reading.startswith("1 of 2 cleaned documents") and "6 INT./EXT. scene headings, 6 NAME: cues" in reading
    prose = "It was a dark night. The rain fell on the roofs of the town.\n\n" * 20
    assert corpus_layout([prose, TINY_TEXT])[0] == PROSE  # most of the text is prose


def row(prompt: str, text: str, new_tokens: int = 5, max_new_tokens: int = 64) -> dict:
    return {"prompt": prompt, "text": text, "new_tokens": new_tokens, "settings": {"max_new_tokens": max_new_tokens}}


FOLLOWS_PLAY = [
    row("HAMLET:\n", "To be, or not to be.\n\nOPHELIA:\nGood my lord.\n"),  # continues the speech, then a new one
    row("HAMLET:\nTo be", ", or not to be.\n[Exit]\n\nSCENE II. A room.\n[Enter ROMEO]\n\nROMEO:\nSoft!\n"),
    row("ROMEO:\n", "But soft.\n\nJULIET:\n"),  # a cue at the very end: cut short there
    row("ROMEO:\n", "But soft.\n\n[Enter JUL", new_tokens=64),  # cut at max_new_tokens mid-direction
]
BREAKS_PLAY = [
    row("HAMLET:\n", "To be.\n\nSure! Here is a short poem about Hamlet.\n"),  # chat text between speeches
    row("HAMLET:\n", "To be.\nOPHELIA:\nMy lord.\n"),  # a cue without the blank line before it
    row("HAMLET:\n", "To be.\n\nOPHELIA:\n\nHAMLET:\nAy.\n"),  # a cue with no speech
    row("HAMLET:\n", "To be.\n\nOphelia: my lord, you are merry.\n"),  # an inline, lower-case cue
    row("HAMLET:\n", "To be.\n\nINT. CASTLE - NIGHT\n\nOPHELIA:\nAy.\n"),  # a screenplay heading in a play
    row("ROMEO:\n", "But soft.\n\n[Enter JUL", new_tokens=12),  # stopped at EOS: the direction is broken
]


def test_format_rate_on_samples_that_follow_and_break_the_layout():
    assert format_rate(FOLLOWS_PLAY, PLAY) == 1.0
    assert format_rate(BREAKS_PLAY, PLAY) == 0.0
    assert format_rate(FOLLOWS_PLAY[:2] + BREAKS_PLAY[:2], PLAY) == 0.5
    screenplay = [row("MARGO:\n", "We open in an hour.\n\nINT. BAKERY - LATER\n[The queue is gone.]\n\nTOM:\nDone.\n"),
                  row("INT. BAKERY - NIGHT\n", "[MARGO kneads.]\n\nMARGO:\nHurry.\n")]
    assert format_rate(screenplay, SCREENPLAY) == 1.0
    assert format_rate(screenplay[:1], PLAY) == 0.0  # a play has no INT./EXT. headings
    assert format_rate(FOLLOWS_PLAY, PROSE) is None and format_rate([], PLAY) == 0.0


def test_review_criteria_by_layout_or_as_listed():
    criteria, why = pick_criteria(None, SCREENPLAY, "1 of 1 cleaned documents read as screenplays")
    assert criteria == REVIEW_CRITERIA[SCREENPLAY] and "INT./EXT." in criteria["style"]
    assert why == "screenplay criteria: 1 of 1 cleaned documents read as screenplays"
    listed = {"humour": "Is it funny?"}
    assert pick_criteria(listed, PLAY, "") == (listed, "criteria as params.yaml lists them (evaluate.review_criteria)")
    assert all(set(REVIEW_CRITERIA[layout]) == {"coherence", "relevance", "style"} for layout in REVIEW_CRITERIA)


# ------------------------------------------------------------------------------------------ the stage


def evaluate_workspace(tmp_path, tiny_model_dir, tokenizer):
    make_workspace(tmp_path, tiny_model_dir, {})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["evaluate"] |= {"eval_blocks": 3, "batch_size": 2, "copy_ngram": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build_tokenized(tmp_path / "data" / "tokenized", tokenizer)
    (tmp_path / "data" / "clean").mkdir()
    write_documents(tmp_path / "data" / "clean" / "documents.jsonl", [Document("hamlet", "test", TINY_TEXT * 3)])
    settings = GenerateParams(prompts=["HAMLET:\n", "ROMEO:\n"], max_new_tokens=6, num_samples=2)
    dirs = {"base": "base", "finetuned": "finetuned", "scratch": "scratch/full"}
    labelled, rows = [], []
    for name in MODELS:
        labelled += generate_samples(name, tmp_path / "models" / dirs[name], settings)
        rows += generate_samples(name, tmp_path / "models" / dirs[name], review_settings(settings))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "samples.jsonl").write_text(samples_jsonl(labelled))
    (tmp_path / "data" / "review_samples.jsonl").write_text(samples_jsonl(rows))
    return rows


def test_stage_run_and_score(tiny_model_dir, tmp_path, tokenizer):
    rows = evaluate_workspace(tmp_path, tiny_model_dir, tokenizer)
    result = run_script("evaluate.py", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    metrics = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"perplexity", "samples", "copy_ngram", "layout", "review_criteria"}
    assert metrics["copy_ngram"] == 4 and metrics["layout"]["name"] == PLAY
    assert metrics["review_criteria"].startswith("play criteria: 1 of 1 cleaned documents (100% of the text) read")
    for name in MODELS:
        entry = metrics["perplexity"][name]
        assert entry["tokens"] == 3 * (BLOCK - 1)
        assert entry["perplexity"] == pytest.approx(math.exp(entry["loss"]))
        assert entry["precision"] in ("fp32", "bf16")
        measures = {"distinct_1", "distinct_2", "repetition_rate", "mean_new_tokens", "copy_rate", "format_rate"}
        assert set(metrics["samples"][name]) == measures
        assert 0.0 <= metrics["samples"][name]["format_rate"] <= 1.0
    same = ("loss", "tokens")  # same tiny weights in all three
    assert {k: metrics["perplexity"]["base"][k] for k in same} == {k: metrics["perplexity"]["scratch"][k] for k in same}

    with open(tmp_path / "data" / "review_key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    assert len(key) == len(rows)
    for name in ("sheet.csv", "sheet.html", "README.md"):
        assert (tmp_path / "reports" / "review" / name).is_file()
    # The page shows the review's own samples; none of them is among the labelled ones in reports/.
    page = (tmp_path / "reports" / "review" / "index.html").read_text()
    samples = json.loads(page.split('id="review-data">')[1].split("</script>")[0])["samples"]
    assert sorted(s["text"] for s in samples) == sorted(row["text"] for row in rows)
    labelled = {json.loads(line)["text"] for line in (tmp_path / "reports" / "samples.jsonl").read_text().splitlines()}
    assert not labelled & {s["text"] for s in samples}

    # A reviewer fills the sheet: base gets 2s, finetuned 4s, scratch is left blank.
    model_of = {row["id"]: row["model"] for row in key}
    sheet_path = tmp_path / "reports" / "review" / "sheet.csv"
    with open(sheet_path, newline="") as f:
        sheet = list(csv.DictReader(f))
    for row in sheet:
        rating = {"base": "2", "finetuned": "4", "scratch": ""}[model_of[row["id"]]]
        row.update(coherence=rating, relevance=rating, style=rating)
    with open(sheet_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sheet[0]))
        writer.writeheader()
        writer.writerows(sheet)
    scored = run_script("evaluate.py", "score", "reports/review/sheet.csv", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    review = json.loads((tmp_path / "metrics" / "review.json").read_text())
    assert review["models"]["base"] == {"rated": 4, "coherence": 2.0, "relevance": 2.0, "style": 2.0}
    assert review["models"]["finetuned"]["style"] == 4.0 and "scratch" not in review["models"]
    assert review["skipped_blank"] == 4
    assert "finetuned" in scored.stdout and "4.00" in scored.stdout


def test_stage_missing_model_writes_nothing(tiny_model_dir, tmp_path, tokenizer):
    evaluate_workspace(tmp_path, tiny_model_dir, tokenizer)
    shutil.rmtree(tmp_path / "models" / "finetuned")
    result = run_script("evaluate.py", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: models/finetuned: model directory not found"
    assert not (tmp_path / "metrics" / "eval.json").exists()
    assert not (tmp_path / "reports" / "review").exists()
    assert not (tmp_path / "data" / "review_key.csv").exists()
