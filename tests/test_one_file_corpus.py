"""A corpus of one file (the usual `input.txt`) goes through the real `dvc repro` to a trained model.

The validation split is held out within the file, is not empty, and shares no line with training.
Runs in a scratch copy of the repository on tiny params, like test_pipeline.py, up to `train` only.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_pipeline import _copy_repo
from tiny import setup_tiny_pipeline

pytestmark = pytest.mark.slow  # several stage processes, each importing torch

BIN = Path(sys.executable).parent


def one_play(paragraphs: int = 80) -> str:
    """Every line unique, so a line on both sides of the split would be a leak."""
    return "".join(
        f"SPEAKER{p % 7}:\nThis is line {p} of the only play, and it is said once.\n"
        f"And here its second half, number {p}, follows it.\n\n"
        for p in range(paragraphs)
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("one-file")
    _copy_repo(repo)
    setup_tiny_pipeline(repo)
    (repo / "corpus").mkdir()
    (repo / "corpus/input.txt").write_text(one_play(), encoding="utf-8")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"]["corpus"] = ["corpus/input.txt"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TRANSFERLM_CACHE": str(repo / ".cache"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }

    def run(*cmd):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "one-file corpus")
    return repo, run


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
