"""The real `dvc repro`, end to end, on tiny params in a scratch copy of this repository.

Also: a second repro does nothing, `dvc exp run -S` makes an experiment that `dvc exp show` reports,
`dvc plots diff` renders, and the artifacts survive a `dvc push` / `dvc pull` round trip.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny import setup_tiny_pipeline

pytestmark = pytest.mark.slow  # about a minute: many stage processes, each importing torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ["fetch", "clean", "tokenize", "train", "scratch", "sweep_summary", "generate", "evaluate", "report"]


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("pipeline")
    _copy_repo(repo)
    setup_tiny_pipeline(repo)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TRANSFERLM_CACHE": str(repo / ".cache"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
    }

    def run(*cmd, check=True):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "tiny pipeline")
    first = run("dvc", "repro")
    return repo, run, first


def test_repro_runs_every_stage_and_writes_every_output(repo):
    path, _, first = repo
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    for out in ["data/raw/manifest.json", "data/clean/documents.jsonl", "data/tokenized/dataset_dict.json",
                "models/base/model.safetensors", "models/finetuned/model.safetensors",
                "models/scratch/model.safetensors", "metrics/train.json", "metrics/scratch.json",
                "metrics/sweep.json", "metrics/eval.json", "plots/train/val_loss.csv", "plots/sweep/best_val_loss.csv",
                "reports/samples.jsonl", "reports/review/sheet.csv", "data/review_key.csv", "reports/report.md"]:
        assert (path / out).exists(), out
    sweep = json.loads((path / "metrics/sweep.json").read_text())
    assert {(r["optimizer"], r["lr"]) for r in sweep["runs"]} == {
        ("adamw", 0.001), ("adamw", 0.01), ("sgd", 0.001), ("sgd", 0.01)}
    train = json.loads((path / "metrics/train.json").read_text())
    assert train["steps"] == 4 and train["final_val_loss"] < train["initial_val_loss"]
    report = (path / "reports/report.md").read_text()
    assert f"{train['final_val_loss']:.3f}" in report
    assert not list(path.glob("checkpoints/*"))


def test_second_repro_changes_nothing(repo):
    _, run, _ = repo
    again = run("dvc", "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout.lower() or "didn't change" in again.stdout


def test_changing_a_clean_rule_invalidates_clean_but_not_fetch(repo):
    path, run, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["clean"]["script_layout"] = False
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        status = json.loads(run("dvc", "status", "--json").stdout)
        assert "clean" in status and "fetch" not in status
        out = run("dvc", "repro", "tokenize").stdout
        assert "Running stage 'clean'" in out and "Running stage 'tokenize'" in out
        assert "Running stage 'fetch'" not in out
    finally:
        run("git", "checkout", "params.yaml")
        run("dvc", "repro")


def test_exp_run_with_a_new_lr_reruns_train_only_downstream(repo):
    _, run, _ = repo
    out = run("dvc", "exp", "run", "-S", "train.lr=3e-5").stdout
    assert "Running stage 'train'" in out
    for untouched in ("fetch", "clean", "tokenize", "scratch", "sweep@"):
        assert f"Running stage '{untouched}" not in out
    shown = json.loads(run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "3e-05" in text and "final_val_loss" in text


def test_plots_diff_renders(repo):
    path, run, _ = repo
    run("dvc", "plots", "diff", "HEAD", "-o", "plots_html")
    html = (path / "plots_html/index.html").read_text()
    assert "Validation loss vs tokens" in html


def test_push_pull_round_trip(repo):
    path, run, _ = repo
    remote = path.parent / (path.name + "-remote")
    run("dvc", "remote", "add", "-f", "-d", "roundtrip", str(remote), "--local")
    run("dvc", "push")
    shutil.rmtree(path / ".dvc/cache")
    shutil.rmtree(path / "models/finetuned")
    shutil.rmtree(path / "data/tokenized")
    run("dvc", "pull")
    assert (path / "models/finetuned/model.safetensors").is_file()
    status = run("dvc", "status")
    assert "up to date" in status.stdout.lower()
