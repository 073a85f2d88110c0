"""Kill the train stage after a checkpoint, rerun it, and get the uninterrupted run's results."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARAMS = """train:
  max_steps: {steps}
  batch_size: 4
  lr: 0.001
  warmup_steps: 5
  eval_every: 100
  eval_blocks: 8
  save_every: 25
  precision: fp32
  seed: 3
"""


def _project(path: Path, model: Path, data: Path, steps: int = 300) -> Path:
    (path / "models").mkdir(parents=True)
    (path / "data").mkdir()
    (path / "models/base").symlink_to(model)
    (path / "data/tokenized").symlink_to(data)
    (path / "params.yaml").write_text(PARAMS.format(steps=steps))
    return path


def _train(project: Path, **kw):
    return subprocess.Popen([sys.executable, ROOT / "stages/train.py"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _losses(project: Path) -> tuple[dict, list[str]]:
    metrics = json.loads((project / "metrics/train.json").read_text())
    val = (project / "plots/train/val_loss.csv").read_text().splitlines()
    return metrics, [line.split(",")[-1] for line in val[1:]]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_result(sig, tmp_path, tiny_model_dir, tiny_tokenized_dir):
    reference = _project(tmp_path / "reference", tiny_model_dir, tiny_tokenized_dir)
    proc = _train(reference)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    interrupted = _project(tmp_path / "interrupted", tiny_model_dir, tiny_tokenized_dir)
    proc = _train(interrupted)
    deadline = time.time() + 120
    while not list((interrupted / "checkpoints/train").glob("step-*/progress.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not (interrupted / "metrics/train.json").exists()
    assert not (interrupted / "models/finetuned").exists()

    proc = _train(interrupted)
    assert proc.wait(timeout=300) == 0
    assert "resuming from step" in proc.stderr.read()
    assert not (interrupted / "checkpoints/train").exists()  # removed once the stage completes

    ref_metrics, ref_val = _losses(reference)
    got_metrics, got_val = _losses(interrupted)
    assert got_val == ref_val
    assert got_metrics["final_train_loss"] == pytest.approx(ref_metrics["final_train_loss"], rel=1e-5)
    assert got_metrics["steps"] == ref_metrics["steps"] == 300


def test_changed_params_start_over(tmp_path, tiny_model_dir, tiny_tokenized_dir):
    project = _project(tmp_path / "p", tiny_model_dir, tiny_tokenized_dir, steps=300)
    proc = _train(project)
    while not list((project / "checkpoints/train").glob("step-*/progress.json")):
        assert proc.poll() is None
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    (project / "params.yaml").write_text(PARAMS.format(steps=300).replace("lr: 0.001", "lr: 0.002"))
    proc = _train(project)
    assert proc.wait(timeout=300) == 0
    err = proc.stderr.read()
    assert "starting over" in err and "resuming" not in err
