"""Kill the train stage after a checkpoint, rerun it, and get the uninterrupted run's results; a checkpoint
of other params or other data (even of the same size), or one that can't be read, is not resumed into."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transferlm.core.curves import read_curve

ROOT = Path(__file__).resolve().parents[2]
PARAMS = """train:
  max_steps: {steps}
  batch_size: 4
  optimizer: adamw
  lr: 0.001
  warmup_steps: 5
  eval_every: 100
  save_every: 25
  precision: fp32
  seed: 3
evaluate:
  eval_blocks: 8
"""


def _project(path: Path, model: Path, data: Path, steps: int = 300, copy_data: bool = False) -> Path:
    (path / "models").mkdir(parents=True)
    (path / "data").mkdir()
    (path / "metrics").mkdir()
    (path / "models/base").symlink_to(model)
    if copy_data:
        shutil.copytree(data, path / "data/tokenized")
    else:
        (path / "data/tokenized").symlink_to(data)
    (path / "params.yaml").write_text(PARAMS.format(steps=steps))
    (path / "metrics/zeroshot.json").write_text('{"loss": 9.0}')  # the zeroshot stage's output
    return path


def _kill_after_checkpoint(project: Path) -> None:
    proc = _train(project)
    deadline = time.time() + 120
    while not list((project / "checkpoints/finetune").glob("step-*[0-9]/progress.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.005)
    proc.kill()
    proc.wait()


def _train(project: Path, **kw):
    return subprocess.Popen([sys.executable, ROOT / "stages/train.py"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _losses(project: Path) -> tuple[dict, list[str]]:
    metrics = json.loads((project / "metrics/finetune/metrics.json").read_text())
    return metrics, [row["val_loss"] for row in read_curve(project / "metrics/finetune", "val")]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_result(sig, tmp_path, tiny_model_dir, tiny_tokenized_dir):
    reference = _project(tmp_path / "reference", tiny_model_dir, tiny_tokenized_dir)
    proc = _train(reference)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    interrupted = _project(tmp_path / "interrupted", tiny_model_dir, tiny_tokenized_dir)
    proc = _train(interrupted)
    deadline = time.time() + 120
    while not list((interrupted / "checkpoints/finetune").glob("step-*[0-9]/progress.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    # The run folder fills as the run goes (dvclive): a killed run's holds its progress (what `dvc exp show`
    # shows of a running experiment), never final metrics. (Read as text: the kill may land mid-write.)
    live = (interrupted / "metrics/finetune/metrics.json").read_text()
    assert "final_val_loss" not in live
    assert not (interrupted / "models/finetuned").exists()

    proc = _train(interrupted)
    assert proc.wait(timeout=300) == 0
    assert "resuming from step" in proc.stderr.read()
    assert not (interrupted / "checkpoints/finetune").exists()  # removed once the stage completes

    ref_metrics, ref_val = _losses(reference)
    got_metrics, got_val = _losses(interrupted)
    assert got_val == ref_val
    assert got_metrics["final_train_loss"] == pytest.approx(ref_metrics["final_train_loss"], rel=1e-5)
    assert got_metrics["steps"] == ref_metrics["steps"] == 300


def _rerun_log(project: Path) -> str:
    proc = _train(project)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return proc.stderr.read()


def test_changed_params_start_over(tmp_path, tiny_model_dir, tiny_tokenized_dir):
    project = _project(tmp_path / "p", tiny_model_dir, tiny_tokenized_dir, steps=100)
    _kill_after_checkpoint(project)
    (project / "params.yaml").write_text(PARAMS.format(steps=100).replace("lr: 0.001", "lr: 0.002"))
    err = _rerun_log(project)
    assert "starting over" in err and "resuming" not in err


def test_changed_data_of_the_same_size_starts_over(tmp_path, tiny_model_dir, tiny_tokenized_dir):
    project = _project(tmp_path / "p", tiny_model_dir, tiny_tokenized_dir, steps=100, copy_data=True)
    _kill_after_checkpoint(project)
    arrow = next((project / "data/tokenized/train").glob("*.arrow"))
    blob = bytearray(arrow.read_bytes())
    blob[-200] ^= 1  # one bit of token data: the file keeps its size
    arrow.write_bytes(bytes(blob))
    err = _rerun_log(project)
    assert "starting over" in err and "resuming" not in err


def test_unreadable_checkpoint_is_skipped(tmp_path, tiny_model_dir, tiny_tokenized_dir):
    project = _project(tmp_path / "p", tiny_model_dir, tiny_tokenized_dir, steps=100)
    _kill_after_checkpoint(project)
    (latest,) = (project / "checkpoints/finetune").glob("step-*")
    (latest / "state.pt").write_bytes(b"not a checkpoint")
    err = _rerun_log(project)
    assert "unreadable" in err and "starting over" in err and "Traceback" not in err
    assert json.loads((project / "metrics/finetune/metrics.json").read_text())["steps"] == 100
