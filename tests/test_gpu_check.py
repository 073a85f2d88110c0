"""bench/gpu_check.sh on a machine without CUDA: it says it skipped the GPU parts, runs the tiny pipeline,
and writes its figures (on a GPU machine it is run by hand: it benches for a few minutes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.slow,  # 2-3 minutes: the tiny pipeline up to the fine-tune, every stage a process importing torch
    pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the full bench: run it by hand"),
]

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_skips_the_gpu_parts_and_runs_the_tiny_pipeline_on_cpu(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable,
           # Up to the fine-tune only: tests/test_pipeline.py runs every stage of the tiny pipeline already.
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
