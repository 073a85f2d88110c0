"""A folder of screenplays (Fountain and printed layout) goes through the real `dvc repro` clean and tokenize
stages with screenplay-shaped prompts and review criteria in params, as the README's example sets them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_pipeline import _copy_repo
from tiny import setup_tiny_pipeline

pytestmark = pytest.mark.slow  # a few stage processes

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).parent / "data/screenplays"


def test_screenplay_folder_through_clean_and_tokenize(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    setup_tiny_pipeline(repo)
    (repo / "scripts").mkdir()
    shutil.copy(FIXTURES / "night_shift.fountain", repo / "scripts")
    shutil.copy(FIXTURES / "pdf_extract.txt", repo / "scripts")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"]["corpus"] = ["scripts/"]
    params["generate"]["prompts"] = ["INT. BAKERY - NIGHT\n\nMARGO:\n"]
    params["evaluate"]["review_criteria"] = ["style: Does it read like a screenplay: scene headings, cues, action?"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TRANSFERLM_CACHE": str(repo / ".cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "scripts"],
                ["dvc", "repro", "tokenize"]):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    rules = json.loads((repo / "metrics/clean.json").read_text())["rules"]["script_layout"]
    assert rules["scenes"] > 0 and rules["cues"] > 0 and rules["speeches"] > 0
    documents = [json.loads(line) for line in (repo / "data/clean/documents.jsonl").read_text().splitlines()]
    assert len(documents) == 2
    for doc in documents:  # every speech under a NAME: cue, no printed-layout indentation left
        assert any(line.endswith(":") and line[:-1].isupper() for line in doc["text"].splitlines())
        assert not any(line.startswith("          ") for line in doc["text"].splitlines())
    stats = json.loads((repo / "metrics/tokenize.json").read_text())
    assert stats["train"]["blocks"] > 0 and stats["validation"]["blocks"] > 0
