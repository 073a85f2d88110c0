"""bench/gpu_check.sh on a machine without CUDA: it says it skipped the GPU parts, runs the tiny pipeline,
and writes its figures (on a GPU machine it is run by hand: it benches for a few minutes).

The script makes its own scratch copy of the checkout and runs `dvc repro train` there. The test starts
that copy warm: DVC's global config (DVC_GLOBAL_CONFIG_DIR) points the copy's cache at a copy of the shared
tiny run's cache (tests/conftest.py's `tiny_repo`), so the stages whose result DVC's run-cache holds for the
same deps and params (fetch, clean, tokenize, zeroshot) are restored instead of run; the study stages and the
fine-tune still run, and so do all the script's own steps."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT

pytestmark = [
    pytest.mark.slow,  # the tiny pipeline up to the fine-tune (warm: most stages restored from the run-cache)
    pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the full bench: run it by hand"),
]


def test_gpu_check_skips_the_gpu_parts_and_runs_the_tiny_pipeline_on_cpu(tiny_repo, tmp_path):
    shutil.copytree(tiny_repo.path / ".dvc/cache", tmp_path / "dvc-cache")
    (tmp_path / "dvc-global").mkdir()
    (tmp_path / "dvc-global/config").write_text(f"[cache]\n    dir = {tmp_path / 'dvc-cache'}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable, "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
           # Up to the fine-tune only: tests/e2e/test_pipeline.py runs every stage of the tiny pipeline already.
           "GPU_CHECK_REPRO_TARGET": "train"}
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "skipped the GPU parts" in proc.stdout
    report = json.loads((tmp_path / "out/gpu_check.json").read_text())
    assert report["cuda"] is False and "bench_train" in report["skipped"]
    assert report["tiny_pipeline"]["ok"] and report["tiny_pipeline"]["final_val_loss"] > 0
    assert report["tiny_pipeline"]["target"] == "train"
    assert not (tmp_path / "out/bench_train.json").exists()
