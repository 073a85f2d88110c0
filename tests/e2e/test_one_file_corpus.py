"""A corpus of one file (the usual `input.txt`) goes through the real `dvc repro` to a trained model.

The validation split is held out within the file, is not empty, and shares no line with training.
Runs in a clone of the session's shared tiny run (tests/conftest.py's `tiny_repo`), up to `train` only.
"""

import json

import pytest

pytestmark = pytest.mark.slow  # several stage processes, each importing torch

def one_play(paragraphs: int = 80) -> str:
    """Every line unique, so a line on both sides of the split would be a leak."""
    return "".join(
        f"SPEAKER{p % 7}:\nThis is line {p} of the only play, and it is said once.\n"
        f"And here its second half, number {p}, follows it.\n\n"
        for p in range(paragraphs)
    )


@pytest.fixture(scope="module")
def repo(tiny_repo, tmp_path_factory):
    """A clone of the session's shared tiny run with fetch.corpus set to one file: every stage after fetch
    reruns on it (the base model and the DVC cache come along warm)."""
    project = tiny_repo.clone(tmp_path_factory.mktemp("one-file") / "repo")
    (project.path / "corpus").mkdir()
    (project.path / "corpus/input.txt").write_text(one_play(), encoding="utf-8")
    project.set_params(fetch={"corpus": ["corpus/input.txt"]})
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "one-file corpus")
    return project.path, project.run


def test_one_file_is_split_within_the_document(repo):
    path, run = repo
    run("dvc", "repro", "tokenize")
    stats = json.loads((path / "metrics/tokenize.json").read_text())
    assert stats["split_method"] == "within_document"
    assert stats["train"]["blocks"] > 0 and stats["validation"]["blocks"] > 0

    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path / "models/base")
    splits = load_from_disk(str(path / "data/tokenized"))
    text = {name: tokenizer.decode(sum(splits[name]["input_ids"], [])) for name in ("train", "validation")}
    # Whole lines only: a block boundary can cut a line in two, and its halves are still on one side.
    lines = {name: {ln for ln in t.splitlines() if ln.startswith("This is line ") and ln.endswith("once.")}
             for name, t in text.items()}
    assert lines["validation"] and lines["train"]
    assert not lines["validation"] & lines["train"]


def test_one_file_trains_a_model(repo):
    path, run = repo
    run("dvc", "repro", "train")
    assert (path / "models/finetuned/model.safetensors").is_file()
