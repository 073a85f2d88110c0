"""The train stage under `accelerate launch` with 2 CPU processes (DDP over gloo), as a user would run it.

Same loss curve as 1 process at the same global batch (rank r trains on its slice of each global
batch and DDP averages the gradients, so only float summation order differs: the curves must agree to
1e-4 relative), and a 2-process run killed after a checkpoint resumes to the uninterrupted result.
Tested at the stage level (a project folder with models/base, data/tokenized and params.yaml), so it
holds whatever the training code's inner layout.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from transferlm.core.curves import read_curve

pytestmark = pytest.mark.slow  # about 1.5 minutes: five stage runs, each importing torch (twice for 2 procs)

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # relative, per logged loss
STEPS = 400  # checkpoints every 10: the kill below lands after the first, well before the end (a run takes ~10 s)
PARAMS = """train:
  max_steps: {steps}
  batch_size: {batch}
  optimizer: adamw
  lr: 0.001
  warmup_steps: 2
  eval_every: 10
  save_every: {save}
  precision: fp32
  seed: 3
"""


def _project(path: Path, model: Path, data: Path, batch: int, steps: int, save: int = 0) -> Path:
    (path / "models").mkdir(parents=True)
    (path / "data").mkdir()
    (path / "models/base").symlink_to(model)
    (path / "data/tokenized").symlink_to(data)
    (path / "params.yaml").write_text(PARAMS.format(steps=steps, batch=batch, save=save))
    (path / "metrics").mkdir()
    (path / "metrics/zeroshot.json").write_text('{"loss": 9.0}')  # the zeroshot stage's output
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(project: Path, processes: int) -> subprocess.Popen:
    script = str(ROOT / "stages/train.py")
    if processes == 1:
        cmd = [sys.executable, script]
    else:
        # --multi_gpu selects torch's multi-process launcher; without a GPU each process trains on CPU and
        # accelerate joins them with gloo. (`--cpu` alone would need MPI for more than one process.)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), script]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every rank, as a crash or an out-of-memory kill would.

    torch's launcher starts each rank in a session of its own, so killing the launcher's process group
    leaves the ranks running as orphans (they would go on writing checkpoints beside the resumed run).
    """
    launcher = psutil.Process(proc.pid)
    ranks = launcher.children(recursive=True)
    for process in [*ranks, launcher]:
        process.kill()
    psutil.wait_procs([*ranks, launcher], timeout=60)
    proc.wait(timeout=60)


def _complete_checkpoints(project: Path) -> list[Path]:
    """Checkpoints swapped into place (a `.partial` folder holds progress.json before its rename too)."""
    found = (project / "checkpoints/finetune").glob("step-*/progress.json")
    return [p for p in found if not p.parent.name.endswith(".partial")]


def _finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def _curves(project: Path) -> tuple[list[float], list[float], dict]:
    folder = project / "metrics/finetune"
    metrics = json.loads((folder / "metrics.json").read_text())
    return ([r["loss"] for r in read_curve(folder, "train")], [r["val_loss"] for r in read_curve(folder, "val")],
            metrics)


def _assert_same_curves(got, expected) -> None:
    got_train, got_val, got_metrics = got
    exp_train, exp_val, exp_metrics = expected
    assert len(got_train) == len(exp_train) and len(got_val) == len(exp_val)
    assert got_train == pytest.approx(exp_train, rel=TOLERANCE)
    assert got_val == pytest.approx(exp_val, rel=TOLERANCE)
    assert got_metrics["tokens"] == exp_metrics["tokens"]


@pytest.fixture(scope="module")
def two_process_reference(tmp_path_factory, tiny_model_dir, tiny_tokenized_dir):
    project = _project(tmp_path_factory.mktemp("two"), tiny_model_dir, tiny_tokenized_dir, batch=2, steps=STEPS)
    _finish(_train(project, 2))
    return project


def test_two_processes_give_the_one_process_curve(tmp_path, tiny_model_dir, tiny_tokenized_dir,
                                                  two_process_reference):
    one = _project(tmp_path / "one", tiny_model_dir, tiny_tokenized_dir, batch=4, steps=STEPS)
    _finish(_train(one, 1))
    two = _curves(two_process_reference)
    _assert_same_curves(two, _curves(one))
    assert two[2]["steps"] == STEPS and two[1][-1] < two[1][0]  # it trained, and learned something
    assert (two_process_reference / "models/finetuned/model.safetensors").is_file()


def test_two_process_run_killed_after_a_checkpoint_resumes_to_the_same_result(
        tmp_path, tiny_model_dir, tiny_tokenized_dir, two_process_reference):
    project = _project(tmp_path / "killed", tiny_model_dir, tiny_tokenized_dir, batch=2, steps=STEPS, save=10)
    proc = _train(project, 2)
    deadline = time.time() + 240
    while not _complete_checkpoints(project):
        assert proc.poll() is None, "the run ended before its first checkpoint:\n" + proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint"
        time.sleep(0.005)
    _kill_run(proc)
    # The run folder fills as the run goes (dvclive); a killed run's holds progress, never final metrics.
    live = (project / "metrics/finetune/metrics.json").read_text()  # as text: the kill may land mid-write
    assert "final_val_loss" not in live

    err = _finish(_train(project, 2))
    assert "resuming from step" in err, "\n".join(line for line in err.splitlines() if "transferlm." in line)[:3000]
    assert not (project / "checkpoints/finetune").exists()  # removed once the stage completes
    _assert_same_curves(_curves(project), _curves(two_process_reference))
