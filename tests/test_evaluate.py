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

from conftest import TINY_TEXT
from test_generate import make_workspace, run_script
from transferlm.data import heldout_blocks
from transferlm.evaluate import (
    copy_rate,
    distinct_n,
    load_tokenized,
    ngram_hashes,
    repetition_rate,
    train_ngram_hashes,
)
from transferlm.generate import MODELS, generate_samples, samples_jsonl
from transferlm.heldout import heldout_loss
from transferlm.params import GenerateParams

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


# ------------------------------------------------------------------------------------------ the stage


def evaluate_workspace(tmp_path, tiny_model_dir, tokenizer):
    make_workspace(tmp_path, tiny_model_dir, {})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["evaluate"] |= {"eval_blocks": 3, "batch_size": 2, "copy_ngram": 4}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    build_tokenized(tmp_path / "data" / "tokenized", tokenizer)
    settings = GenerateParams(prompts=["HAMLET:\n", "ROMEO:\n"], max_new_tokens=6, num_samples=2)
    dirs = {"base": "base", "finetuned": "finetuned", "scratch": "scratch/full"}
    rows = [row for name in MODELS for row in generate_samples(name, tmp_path / "models" / dirs[name], settings)]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "samples.jsonl").write_text(samples_jsonl(rows))
    return rows


def test_stage_run_and_score(tiny_model_dir, tmp_path, tokenizer):
    rows = evaluate_workspace(tmp_path, tiny_model_dir, tokenizer)
    result = run_script("evaluate.py", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    metrics = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"perplexity", "samples", "copy_ngram"} and metrics["copy_ngram"] == 4
    for name in MODELS:
        entry = metrics["perplexity"][name]
        assert entry["tokens"] == 3 * (BLOCK - 1)
        assert entry["perplexity"] == pytest.approx(math.exp(entry["loss"]))
        assert entry["precision"] in ("fp32", "bf16")
        measures = {"distinct_1", "distinct_2", "repetition_rate", "mean_new_tokens", "copy_rate"}
        assert set(metrics["samples"][name]) == measures
    same = ("loss", "tokens")  # same tiny weights in all three
    assert {k: metrics["perplexity"]["base"][k] for k in same} == {k: metrics["perplexity"]["scratch"][k] for k in same}

    with open(tmp_path / "data" / "review_key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    assert len(key) == len(rows)
    for name in ("sheet.csv", "sheet.html", "README.md"):
        assert (tmp_path / "reports" / "review" / name).is_file()

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
