"""A run folder through dvclive: live progress in metrics.json, final metrics at the end, resume rewrites."""

import json
import subprocess
import sys

import pytest

from transferlm.core.curves import CurveLog, read_curve, series_path
from transferlm.core.errors import InputError


def _val(step, loss):
    return {"step": step, "tokens": step * 8, "flops": step * 100.0, "seconds": step * 0.5, "val_loss": loss}


def _train(step, loss):
    return {"step": step, "tokens": step * 8, "flops": step * 100.0, "seconds": step * 0.5, "loss": loss, "lr": 1e-3}


def test_metrics_json_follows_the_latest_step_then_holds_the_final_metrics(tmp_path):
    run = tmp_path / "run"
    log = CurveLog(run, {"optimizer": "adamw", "eval_steps": (2, 4)})
    log.log("val", _val(0, 5.0))
    log.log("train", _train(1, 4.9))
    live = json.loads((run / "metrics.json").read_text())  # what `dvc exp show` reads while the run goes
    assert live["step"] == 1 and live["train"]["loss"] == 4.9 and live["val"]["loss"] == 5.0
    log.log("train", _train(2, 4.7))
    assert json.loads((run / "metrics.json").read_text())["train"]["loss"] == 4.7
    log.close({"final_val_loss": 4.5, "diverged": False})
    assert json.loads((run / "metrics.json").read_text()) == {"final_val_loss": 4.5, "diverged": False, "step": 2}
    assert "eval_steps" in (run / "params.yaml").read_text()


def test_a_resumed_log_rewrites_the_checkpointed_rows_and_drops_later_ones(tmp_path):
    run = tmp_path / "run"
    killed = CurveLog(run, {})
    for step in range(1, 6):  # logged before a kill; the checkpoint was at step 3
        killed.log("train", _train(step, 5.0 - step / 10))
    checkpointed = {"train": [_train(s, 5.0 - s / 10) for s in (1, 2, 3)], "val": [_val(0, 5.1)]}
    resumed = CurveLog(run, {}, checkpointed)
    resumed.log("train", _train(4, 4.0))
    assert [r["step"] for r in read_curve(run, "train")] == [1, 2, 3, 4]
    assert read_curve(run, "train")[-1]["loss"] == 4.0
    assert read_curve(run, "val") == [pytest.approx(_val(0, 5.1))]


def test_a_nan_loss_round_trips(tmp_path):
    log = CurveLog(tmp_path / "run", {})
    log.log("val", _val(0, float("nan")))
    assert read_curve(tmp_path / "run", "val")[0]["val_loss"] != read_curve(tmp_path / "run", "val")[0]["val_loss"]


def test_a_missing_or_foreign_series_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="val/loss.tsv: not found"):
        read_curve(tmp_path / "none", "val")
    log = CurveLog(tmp_path / "run", {})
    log.log("val", _val(0, 5.0))
    series_path(tmp_path / "run", "val", "flops").write_text("step,flops\n0,1\n")  # a CSV, not dvclive's TSV
    with pytest.raises(InputError, match="val/flops.tsv: not a dvclive series"):
        read_curve(tmp_path / "run", "val")


def test_logs_in_a_dvc_project_whose_git_repository_has_no_commit_yet(tmp_path, monkeypatch):
    # `git init`, `dvc init`, then `dvc repro` before the first commit: dvclive finds no HEAD there.
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    log = CurveLog(tmp_path / "metrics/run", {})
    log.log("val", _val(0, 5.0))
    log.close({"final_val_loss": 5.0})
    assert read_curve(tmp_path / "metrics/run", "val")[0]["val_loss"] == 5.0
