"""bench/train_throughput.py's time boxes: a variant past its deadline is reported as timed out (and its
processes killed), a precision the probe found far too slow is skipped with the reason in the JSON, and
the peak and model-matmul measurements stay inside their boxes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_throughput import (
    PEAK_SIZES,
    matmul_peak,
    model_matmul_ceiling,
    probe_shapes,
    run_variant,
    slow_precisions,
)

from helpers import ROOT
from transferlm.lm import cpu_probe as precision


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_variant_past_its_deadline_is_reported_as_timed_out_and_its_processes_killed(tmp_path):
    # A stand-in variant that starts a worker of its own and then never ends.
    pid_file = tmp_path / "worker.pid"
    code = ("import subprocess, sys, time\n"
            "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(worker.pid))\n"
            "time.sleep(120)\n")
    started = time.monotonic()
    row = run_variant("slow_variant", [sys.executable, "-c", code], deadline_s=3)
    assert row == {"status": "timed_out", "reason": "timed out after 3 s"}
    assert time.monotonic() - started < 20
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the variant's own worker outlived its deadline"


def test_a_variant_that_fails_is_reported_with_its_last_error_line():
    row = run_variant("broken", [sys.executable, "-c", "raise SystemExit('no model here')"], deadline_s=30)
    assert row == {"status": "failed", "reason": "exit status 1: no model here"}


def test_a_precision_the_probe_measured_far_slower_is_skipped_only_where_it_cannot_fit():
    # The AVX2-only Zen 3: bf16 at ~1 GFLOP/s, 40x slower than fp32. 11 steps of 0.9 TFLOP cannot end in 300 s.
    zen3 = {"bf16_gflops": 1.1, "fp32_gflops": 44.0}
    skipped = slow_precisions(zen3, step_flops=0.9e12, steps=11, deadline_s=300)
    assert list(skipped) == ["bf16"]
    assert "40.0x slower" in skipped["bf16"] and "over the 300 s deadline" in skipped["bf16"]
    # The AMX Xeon: fp32 5x slower than bf16, yet 11 steps take under a minute at its rate: nothing skipped.
    amx = {"bf16_gflops": 1000.0, "fp32_gflops": 200.0}
    assert slow_precisions(amx, step_flops=0.9e12, steps=11, deadline_s=300) == {}


def test_the_peak_grows_its_size_only_while_the_next_fits_in_the_box():
    assert matmul_peak(torch.float32, reps=1, box_s=0)["sizes"] == [PEAK_SIZES[0]]
    sizes = matmul_peak(torch.float32, reps=1, box_s=2)["sizes"]  # how far it gets depends on the machine
    assert sizes == list(PEAK_SIZES[: len(sizes)])


def test_the_model_matmuls_are_not_timed_where_they_would_overrun_the_box(tiny_model_dir):
    ceiling, why = model_matmul_ceiling(tiny_model_dir, 32, torch.float32, peak_gflops=1e-6, box_s=1)
    assert ceiling is None and "over the 1 s box" in why
    ceiling, why = model_matmul_ceiling(tiny_model_dir, 32, torch.float32, peak_gflops=1.0, box_s=60)
    assert ceiling > 0 and why == ""


@pytest.mark.slow  # the bench's own processes: about 20 s
def test_the_bench_records_a_skipped_precision_and_a_timed_out_variant(tmp_path, tiny_model_dir):
    # A cached probe answer for this machine and the tiny model that says bf16 is 1000x slower than fp32,
    # exactly as a probe on such a CPU would have left it; the bench reads it as it reads a real one.
    cache = tmp_path / "cache"
    shapes = {**precision.DEFAULT_SHAPES, **probe_shapes(tiny_model_dir, 2 * 16)}
    os.environ["TRANSFERLM_CACHE"] = str(cache)
    try:
        key = precision.machine_key(shapes)
    finally:
        del os.environ["TRANSFERLM_CACHE"]
    cache.mkdir()
    (cache / "precision_probe.json").write_text(json.dumps({key: {
        "precision": "fp32", "reason": "bf16 matmuls measured 1000.00x slower than fp32 here",
        "bf16_seconds": 1000.0, "fp32_seconds": 1.0, "bf16_gflops": 0.001, "fp32_gflops": 1.0, "shapes": shapes,
    }}))
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/train_throughput.py"), "--base", str(tiny_model_dir),
         "--data", str(tmp_path / "none"), "--variants", "trainer_bf16,transferlm_fp32", "--warmup", "1",
         "--steps", "2", "--batch-size", "2", "--block-size", "16", "--peak-seconds", "1",
         "--variant-timeout", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TRANSFERLM_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["precision_probe"]["source"] == "cache"
    assert "1000.0x slower" in report["skipped_precisions"]["bf16"]
    assert report["not_run"]["trainer_bf16"] == {"status": "skipped", "reason": report["skipped_precisions"]["bf16"],
                                                 "precision": "bf16"}
    assert report["model_matmul_ceiling_skipped"] == {"bf16": "its precision is skipped"}
    assert report["not_run"]["transferlm_fp32"] == {"status": "timed_out", "reason": "timed out after 1 s",
                                                    "precision": "fp32"}
    assert report["variants"] == {}
    table = proc.stdout.splitlines()
    assert any(line.startswith("transferlm_fp32") and line.endswith("timed out after 1 s") for line in table)
    assert any(line.startswith("trainer_bf16") and "skipped: the precision probe measured bf16" in line
               for line in table)
    assert "[bench" in proc.stderr  # the progress lines
