"""Generate stage: batched seeded sampling from the three models and the samples files."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers.stage_workspace import make_workspace, run_script
from transferlm.core.errors import InputError
from transferlm.core.params import GenerateParams
from transferlm.evaluate.generate import MODELS, blind_samples, generate_samples, review_settings
from transferlm.lm.models import load_for_inference as load_model

REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["HAMLET:\nTo be, or not to be", "ROMEO:\n"]
SETTINGS = GenerateParams(prompts=PROMPTS, max_new_tokens=8, num_samples=3, batch_size=4, seed=1337)


def test_batched_samples_per_prompt_exclude_the_prompt(tiny_model_dir):
    rows = generate_samples("base", tiny_model_dir, SETTINGS)
    # 2 prompts x 3 samples in batches of 4: one batch mixes both prompts (left padding).
    assert sorted((row["prompt"], row["sample"]) for row in rows) == sorted(
        (prompt, i) for prompt in PROMPTS for i in range(3)
    )
    for row in rows:
        assert row["model"] == "base"
        assert row["seed"] == 1337 + row["sample"]
        assert 1 <= row["new_tokens"] <= SETTINGS.max_new_tokens
        assert "To be, or not" not in row["text"] and not row["text"].startswith("ROMEO")
        assert row["settings"]["max_new_tokens"] == 8 and row["settings"]["top_k"] == SETTINGS.top_k


def texts(rows: list[dict]) -> dict[tuple[str, int], str]:
    return {(row["prompt"], row["sample"]): row["text"] for row in rows}


def test_same_seed_same_samples_whatever_the_batch(tiny_model_dir):
    first = generate_samples("base", tiny_model_dir, SETTINGS)
    assert generate_samples("base", tiny_model_dir, SETTINGS) == first
    # Each sample has its own generator: one row per batch gives the same texts as mixed batches of 4.
    alone = generate_samples("base", tiny_model_dir, dataclasses.replace(SETTINGS, batch_size=1))
    assert texts(alone) == texts(first)
    other_seed = generate_samples("base", tiny_model_dir, dataclasses.replace(SETTINGS, seed=7))
    assert texts(other_seed) != texts(first)


def test_samples_of_one_prompt_differ(tiny_model_dir):
    rows = generate_samples("base", tiny_model_dir, dataclasses.replace(SETTINGS, max_new_tokens=16))
    assert len({row["text"] for row in rows if row["prompt"] == PROMPTS[0]}) == 3


def test_load_model_pads_left_with_eos_when_no_pad(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (tmp_path / "m" / "tokenizer_config.json").write_text(json.dumps(config))
    model, tokenizer = load_model(tmp_path / "m")
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == tokenizer.eos_token
    assert not model.training


def test_stage_writes_samples_and_prompt_mode_matches(tiny_model_dir, tmp_path):
    tiny = {"prompts": PROMPTS, "max_new_tokens": 6, "num_samples": 2, "batch_size": 3}
    make_workspace(tmp_path, tiny_model_dir, tiny)
    result = run_script("generate.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jsonl = tmp_path / "reports" / "samples.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == len(MODELS) * len(PROMPTS) * 2
    assert {row["model"] for row in rows} == set(MODELS)
    for row in rows:
        assert set(row) == {"model", "prompt", "prompt_source", "sample", "seed", "text", "new_tokens", "settings"}
        assert row["prompt_source"] == {"param": f"generate.prompts[{PROMPTS.index(row['prompt'])}]"}
    # The three model dirs hold the same weights and every model gets the same seeds: same texts.
    by_model = {name: [r["text"] for r in rows if r["model"] == name] for name in MODELS}
    assert by_model["base"] == by_model["finetuned"] == by_model["scratch"]
    page = (tmp_path / "reports" / "samples.md").read_text()
    assert all(name in page for name in MODELS) and "To be, or not to be" in page and "temperature=0.8" in page

    # The blind review's samples: outside reports/, the seeds after the labelled ones', and no text of them
    # anywhere under reports/ (where it would stand under its model's name).
    review = [json.loads(line) for line in (tmp_path / "data" / "review_samples.jsonl").read_text().splitlines()]
    assert len(review) == len(rows) and {row["seed"] for row in review} == {1337 + 2, 1337 + 3}
    assert {row["seed"] for row in rows} == {1337, 1338}
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == ["samples.jsonl", "samples.md"]
    assert not {row["text"] for row in review} & {row["text"] for row in rows}  # both files print only `rows`

    before = jsonl.read_bytes()
    assert run_script("generate.py", cwd=tmp_path).returncode == 0
    assert jsonl.read_bytes() == before  # same params, same file

    # One prompt from the command line with the default seed is sample 0 of the pipeline.
    shown = run_script("generate.py", "--prompt", PROMPTS[0], "--model", "models/finetuned", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    sample0 = next(r for r in rows if r["model"] == "finetuned" and r["prompt"] == PROMPTS[0] and r["sample"] == 0)
    assert shown.stdout == PROMPTS[0] + sample0["text"] + "\n"
    assert jsonl.read_bytes() == before


def test_stage_auto_prompts_come_from_the_validation_documents(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from helpers.tiny import tiny_documents
    from transferlm.core.params import TokenizeParams
    from transferlm.data.clean import write_documents
    from transferlm.data.corpus import Document
    from transferlm.data.tokenize import build_splits

    tiny = {"prompts": "auto", "auto_prompts": 3, "prompt_tokens": 40, "max_new_tokens": 4, "num_samples": 1}
    make_workspace(tmp_path, tiny_model_dir, tiny)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["tokenize"] |= {"block_size": 32, "val_fraction": 0.34, "seed": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    docs = [Document(**d) for d in tiny_documents()]
    _, stats = build_splits(docs, AutoTokenizer.from_pretrained(tiny_model_dir), TokenizeParams(32, 0.34, 0))
    (tmp_path / "data" / "clean").mkdir(parents=True)
    write_documents(tmp_path / "data" / "clean" / "documents.jsonl", docs)
    (tmp_path / "metrics" / "tokenize.json").write_text(json.dumps(stats))

    result = run_script("generate.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "reports" / "samples.jsonl").read_text().splitlines()]
    text_of = {doc.name: doc.text for doc in docs}
    prompts = {row["prompt"] for row in rows}  # the tiny plays repeat their text: a repeated passage is left out
    assert 2 <= len(prompts) <= 3 and len(rows) == len(prompts) * len(MODELS)
    for row in rows:
        source = row["prompt_source"]
        assert source["document"] in stats["validation_documents"]
        assert text_of[source["document"]][source["start"] : source["end"]] == row["prompt"]
    page = (tmp_path / "reports" / "samples.md").read_text()
    assert f"From {rows[0]['prompt_source']['document']}, characters " in page


def test_missing_model_dir_is_a_one_line_error(tiny_model_dir, tmp_path):
    make_workspace(tmp_path, tiny_model_dir, {})
    shutil.rmtree(tmp_path / "models" / "scratch")
    result = run_script("generate.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: models/scratch/full: model directory not found"
    assert not (tmp_path / "reports").exists()
    with pytest.raises(InputError, match="models/scratch: model directory not found"):
        load_model(tmp_path / "models" / "scratch")


def test_review_samples_take_the_seeds_after_the_labelled_ones_and_never_repeat_their_text():
    assert review_settings(SETTINGS).seed == SETTINGS.seed + SETTINGS.num_samples
    labelled = [{"model": "base", "text": "the same"}, {"model": "finetuned", "text": "A"}]
    review = [{"model": "base", "text": "the same"}, {"model": "base", "text": "B"}]
    assert blind_samples(review, labelled) == [{"model": "base", "text": "B"}]
