"""Scale-out with DVC's own machinery, on tiny params in a scratch copy of this repository.

- An optimizer x lr grid queued with `dvc exp run --queue` and run by `dvc queue start -j 2` (two
  workers at once) gives the same results as the same experiments run one after another.
- Two clones of one project ("two machines"), a bare git repo and a local DVC remote: each clone
  runs its own experiment and `dvc exp push`es it; the other `dvc exp pull`s it, and `dvc exp show` /
  `dvc plots diff` / `dvc exp apply` see both, outputs included.
"""

import json
import time
from pathlib import Path

import pytest

from helpers.project import tiny_env

pytestmark = pytest.mark.slow  # about 2-3 minutes: six tiny training runs, DVC's workers (from the shared repro)

GRID = [("adamw", "0.001"), ("sgd", "0.01")]
# -f -s: run the train stage itself even where DVC's run-cache holds a result for the same params (so
# the queued runs really train), and only that stage (its inputs are already in place).
TRAIN_ONLY = ["train", "-f", "-s"]


@pytest.fixture(scope="module")
def shared(tiny_repo, tmp_path_factory):
    """Clone A of a tiny project with its train stage run, pushed to a bare git repo and a DVC remote.

    A is a clone of the session's shared tiny run (every stage run, DVC cache included), so `dvc repro
    train` here only confirms the stage is up to date."""
    root = tmp_path_factory.mktemp("queue")
    a = root / "a"
    # One machine: both clones share the user cache.
    project = tiny_repo.clone(a, env=tiny_env(a, TRANSFERLM_CACHE=str(root / "cache")))

    def run(*cmd, cwd: Path, check: bool = True):
        # Bounded: `dvc queue start` was once seen to hang for good with its first worker running and the
        # second never started (on a machine loaded by other test runs); a bound turns that into a failure.
        return project.run(*cmd, cwd=cwd, check=check, timeout=900)

    run("git", "init", "-q", "--bare", str(root / "shared.git"), cwd=root)
    run("dvc", "remote", "add", "-d", "shared", str(root / "dvc-store"), cwd=a)
    run("dvc", "repro", "train", cwd=a)
    run("git", "add", "-A", cwd=a)
    run("git", "commit", "-qm", "tiny project, train stage run", cwd=a)
    run("git", "remote", "add", "origin", str(root / "shared.git"), cwd=a)
    run("git", "push", "-q", "origin", "HEAD:main", cwd=a)
    run("dvc", "push", "--with-deps", "train", cwd=a)
    yield root, a, run
    for clone in (a, root / "b"):
        if (clone / ".dvc").is_dir():
            run("dvc", "queue", "stop", "--kill", cwd=clone, check=False)  # no worker outlives the test


def _experiments(run, repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` over all commits: experiment name -> {"metrics": the fine-tune's, "params": train}."""
    shown = json.loads(run("dvc", "exp", "show", "-A", "--json", cwd=repo).stdout)
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev.get("data") or {}
                found[rev.get("name") or exp.get("name")] = {
                    "metrics": data["metrics"]["metrics/finetune/metrics.json"]["data"],
                    "params": data["params"]["params.yaml"]["data"]["train"],
                }
    return found


def _wait_for_queue(run, repo: Path, timeout: float = 600) -> str:
    deadline = time.time() + timeout
    while True:
        status = run("dvc", "queue", "status", cwd=repo).stdout
        tasks = [line for line in status.splitlines()[1:] if line.strip() and not line.startswith("Worker")]
        if tasks and not any(word in line for line in tasks for word in ("Queued", "Running")):
            return status
        assert time.time() < deadline, f"queue still busy after {timeout} s:\n{status}"
        time.sleep(2)


def test_queued_grid_with_two_workers_equals_the_serial_runs(shared):
    _, a, run = shared
    for optimizer, lr in GRID:
        run("dvc", "exp", "run", *TRAIN_ONLY, "-S", f"train.optimizer={optimizer}", "-S", f"train.lr={lr}",
            "--name", f"serial-{optimizer}", cwd=a)
    for optimizer, lr in GRID:
        run("dvc", "exp", "run", *TRAIN_ONLY, "--queue", "-S", f"train.optimizer={optimizer}",
            "-S", f"train.lr={lr}", "--name", f"queued-{optimizer}", cwd=a)
    started = run("dvc", "queue", "start", "-j", "2", cwd=a)
    assert "2" in started.stdout + started.stderr  # two workers
    status = _wait_for_queue(run, a)
    assert status.count("Success") == len(GRID), status

    found = _experiments(run, a)
    for optimizer, lr in GRID:
        log = run("dvc", "queue", "logs", f"queued-{optimizer}", cwd=a).stdout
        assert "Running stage 'train'" in log  # trained, not restored from a cache
        queued, serial = found[f"queued-{optimizer}"], found[f"serial-{optimizer}"]
        assert queued["params"]["optimizer"] == serial["params"]["optimizer"] == optimizer
        assert queued["metrics"]["lr"] == serial["metrics"]["lr"] == float(lr)
        for key in ("initial_val_loss", "final_val_loss", "final_train_loss"):
            assert queued["metrics"][key] == pytest.approx(serial["metrics"][key], rel=1e-5), key
    # Different settings did give different results (the comparison above can tell runs apart).
    assert found["queued-adamw"]["metrics"]["final_val_loss"] != found["queued-sgd"]["metrics"]["final_val_loss"]


def test_experiments_from_two_clones_meet_through_exp_push_and_pull(shared):
    root, a, run = shared
    b = root / "b"
    run("git", "clone", "-q", "-b", "main", str(root / "shared.git"), str(b), cwd=root)
    run("dvc", "pull", "--with-deps", "train", cwd=b)  # the inputs the train stage needs, from the DVC remote

    run("dvc", "exp", "run", *TRAIN_ONLY, "-S", "train.lr=0.003", "--name", "from-a", cwd=a)
    run("dvc", "exp", "run", *TRAIN_ONLY, "-S", "train.lr=0.0003", "--name", "from-b", cwd=b)
    run("dvc", "exp", "push", "origin", "from-a", cwd=a)  # git refs to the bare repo, outputs to the DVC remote
    run("dvc", "exp", "push", "origin", "from-b", cwd=b)
    run("dvc", "exp", "pull", "origin", "from-b", cwd=a)
    run("dvc", "exp", "pull", "origin", "from-a", cwd=b)

    seen_a, seen_b = _experiments(run, a), _experiments(run, b)
    for name in ("from-a", "from-b"):
        assert seen_a[name]["metrics"] == seen_b[name]["metrics"]
    assert seen_b["from-a"]["metrics"]["lr"] == 0.003 and seen_a["from-b"]["metrics"]["lr"] == 0.0003

    run("dvc", "plots", "diff", "from-a", "from-b", "-o", "compare", cwd=b)
    assert "Held-out loss vs tokens" in (b / "compare/index.html").read_text()

    # The pulled experiment's outputs came along: applying it in B restores A's model and metrics. (apply
    # also complains about the outputs of stages this tiny copy never ran, e.g. models/scratch, whose
    # entries dvc.lock carries over from the real pipeline; the train stage's own are checked below.)
    run("dvc", "exp", "apply", "from-a", cwd=b, check=False)
    run("dvc", "checkout", "train", cwd=b)
    assert json.loads((b / "metrics/finetune/metrics.json").read_text()) == seen_a["from-a"]["metrics"]
    assert (b / "models/finetuned/model.safetensors").is_file()
    assert "up to date" in run("dvc", "status", "train", cwd=b).stdout.lower()
