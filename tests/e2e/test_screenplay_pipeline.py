"""A folder of screenplays (Fountain and printed layout) through the real `dvc repro`, every default left as
it is: `generate.prompts: auto` and `evaluate.review_criteria: auto` must by themselves give screenplay
prompts cut from the held-out split, the screenplay review criteria, a reference sample per prompt and a
format measure per model.

It starts from a clone of the session's shared tiny run (tests/conftest.py's `tiny_repo`) and changes only
fetch.corpus (and puts generate.prompts back to params.yaml's default, which the tiny overlay lists). The
corpus stages rerun as DVC sees fit (fetch, clean, tokenize); generate and evaluate then rerun on their own
(`dvc repro -s`), with the tiny models the shared run trained: what is checked here is what the corpus
decides (prompts, criteria, reference, layout), not what the models learnt from it.
"""

import json
import shutil

import pytest
import yaml

from helpers import ROOT, TEST_DATA

pytestmark = pytest.mark.slow  # five stage processes, each importing torch

# Two Fountain files and two printed-layout extracts (indented cues, as a PDF's text comes out).
SCREENPLAYS = ["night_shift.fountain", "winter_harbour.fountain", "pdf_extract.txt", "bus_stop.txt"]


@pytest.fixture(scope="module")
def repo(tiny_repo, tmp_path_factory):
    project = tiny_repo.clone(tmp_path_factory.mktemp("screenplay") / "repo")
    (project.path / "scripts").mkdir()
    for name in SCREENPLAYS:
        shutil.copy(TEST_DATA / "screenplays" / name, project.path / "scripts")
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert defaults["generate"]["prompts"] == "auto" and defaults["evaluate"]["review_criteria"] == "auto"
    project.set_params(fetch={"corpus": ["scripts/"]}, generate={"prompts": defaults["generate"]["prompts"]})
    params = yaml.safe_load((project.path / "params.yaml").read_text())
    assert params["evaluate"]["review_criteria"] == "auto"  # nothing overrides it
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "screenplays")
    out = project.run("dvc", "repro", "tokenize").stdout
    out += project.run("dvc", "repro", "-s", "generate", "evaluate").stdout
    return project.path, out


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_corpus_stages_and_generate_and_evaluate_reran(repo):
    _, out = repo
    for stage in ("fetch", "clean", "tokenize", "generate", "evaluate"):
        assert f"Running stage '{stage}'" in out, stage


def test_screenplays_are_cleaned_into_the_screenplay_layout(repo):
    path, _ = repo
    rules = json.loads((path / "metrics/clean.json").read_text())["rules"]["script_layout"]
    assert rules["scenes"] > 0 and rules["cues"] > 0 and rules["speeches"] > 0
    documents = _jsonl(path / "data/clean/documents.jsonl")
    assert len(documents) == len(SCREENPLAYS)
    for doc in documents:  # every speech under a NAME: cue, no printed-layout indentation left
        assert any(line.endswith(":") and line[:-1].isupper() for line in doc["text"].splitlines())
        assert not any(line.startswith("          ") for line in doc["text"].splitlines())
    stats = json.loads((path / "metrics/tokenize.json").read_text())
    assert stats["split_method"] == "by_document"
    assert stats["train"]["blocks"] > 0 and stats["validation"]["blocks"] > 0


def test_auto_prompts_are_cut_from_the_held_out_screenplays(repo):
    path, _ = repo
    held_out = set(json.loads((path / "metrics/tokenize.json").read_text())["validation_documents"])
    texts = {doc["name"]: doc["text"] for doc in _jsonl(path / "data/clean/documents.jsonl")}
    assert held_out and held_out < set(texts)
    rows = _jsonl(path / "reports/samples.jsonl")
    prompts = {row["prompt"]: row["prompt_source"] for row in rows}
    assert prompts
    for prompt, source in prompts.items():
        assert "param" not in source  # none listed in params.yaml
        assert source["document"] in held_out
        assert texts[source["document"]][source["start"]:source["end"]] == prompt
    assert not {"HAMLET:\n", "MARA:\n"} & set(prompts)  # the tiny overlay's listed prompts are gone


def test_every_auto_prompt_has_a_reference_sample(repo):
    path, _ = repo
    prompts = {row["prompt"] for row in _jsonl(path / "reports/samples.jsonl")}
    review = _jsonl(path / "data/review_samples.jsonl")
    reference = [row for row in review if row["model"] == "reference"]
    assert sorted(row["prompt"] for row in reference) == sorted(prompts)
    assert all(row["text"].strip() and row["new_tokens"] > 0 for row in reference)
    assert {row["model"] for row in review} > {"reference"}  # and the models' own samples beside it


def test_screenplay_criteria_and_a_format_measure_per_model(repo):
    path, _ = repo
    metrics = json.loads((path / "metrics/eval.json").read_text())
    assert metrics["layout"]["name"] == "screenplay"
    assert metrics["review_criteria"].startswith("screenplay criteria")
    models = {row["model"] for row in _jsonl(path / "reports/samples.jsonl")}
    assert models and set(metrics["samples"]) == models | {"reference"}
    for name, measures in metrics["samples"].items():
        assert measures["format_rate"] is not None and 0 <= measures["format_rate"] <= 1, name
    page = (path / "reports/review/index.html").read_text(encoding="utf-8")
    assert "screenplay criteria" in page
