"""outputs.py: a stage's outputs appear all together or not at all, and leftovers are ignored and cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from transferlm.core import outputs
from transferlm.core.outputs import remove_stale_temps, staged_outputs

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("data", "metrics.json", "plot.csv")


def write_generation(folder: Path, tag: str) -> None:
    """Three finals (a folder and two files) all saying `tag`, as a finished earlier run would leave them."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data/part.txt").write_text(tag)
    (folder / "metrics.json").write_text(tag)
    (folder / "plot.csv").write_text(tag)


def generations(folder: Path) -> list[str | None]:
    """What each final holds: its tag, or None when it is absent."""
    files = [folder / "data/part.txt", folder / "metrics.json", folder / "plot.csv"]
    return [f.read_text() if f.exists() else None for f in files]


def write_new(temps: list[Path]) -> None:
    data, metrics, plot = temps
    data.mkdir()
    (data / "part.txt").write_text("new")
    metrics.write_text("new")
    plot.write_text("new")


def test_all_outputs_replace_the_old_ones_and_leave_no_temporary(tmp_path):
    write_generation(tmp_path, "old")
    with staged_outputs(*(tmp_path / n for n in NAMES)) as temps:
        assert all(t.parent == tmp_path and t.name.endswith(".tmp") and not t.exists() for t in temps)
        write_new(temps)
    assert generations(tmp_path) == ["new", "new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_an_error_while_writing_keeps_the_old_outputs(tmp_path):
    write_generation(tmp_path, "old")
    with pytest.raises(ValueError):
        with staged_outputs(*(tmp_path / n for n in NAMES)) as temps:
            write_new(temps)
            raise ValueError("the stage failed after writing")
    assert generations(tmp_path) == ["old", "old", "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("failing_rename", range(1, 7))  # 3 moves aside, then 3 moves in
def test_a_failure_between_renames_puts_every_old_output_back(tmp_path, monkeypatch, failing_rename):
    write_generation(tmp_path, "old")
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(src)
        if len(calls) == failing_rename:
            raise OSError("disk gone")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk gone"):
        with staged_outputs(*(tmp_path / n for n in NAMES)) as temps:
            write_new(temps)
    assert generations(tmp_path) == ["old", "old", "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


KILLED_RUN = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from transferlm.core import outputs

    folder, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == kill_at:
            os._exit(9)  # as abrupt as SIGKILL: no finally, no cleanup
        real_replace(src, dst)

    outputs.os.replace = replace
    with outputs.staged_outputs(*(folder / n for n in ("data", "metrics.json", "plot.csv"))) as (d, m, p):
        d.mkdir()
        (d / "part.txt").write_text("new")
        m.write_text("new")
        p.write_text("new")
""")


@pytest.mark.parametrize("kill_at", range(1, 7))
def test_a_kill_between_renames_never_shows_old_and_new_together(tmp_path, kill_at):
    write_generation(tmp_path, "old")
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path), str(kill_at)], capture_output=True)
    assert proc.returncode == 9, proc.stderr
    seen = {g for g in generations(tmp_path) if g is not None}
    assert seen in ({"old"}, {"new"}, set())
    if kill_at > 1:  # killed after a rename: a gap, which makes DVC rerun the stage
        assert None in generations(tmp_path)
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # leftovers of the killed run

    # The next run clears them and puts a complete set in place.
    with staged_outputs(*(tmp_path / n for n in NAMES)) as temps:
        write_new(temps)
    assert generations(tmp_path) == ["new", "new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_stale_temps_of_other_outputs_are_left_alone(tmp_path):
    mine = [tmp_path / ".train.abcd_123.tmp", tmp_path / ".train.zzzzzzzz.old.tmp"]
    others = [tmp_path / ".train.json.abcd1234.tmp", tmp_path / ".train.short.tmp", tmp_path / "train.tmp"]
    for path in mine + others:
        path.mkdir()
    assert sorted(remove_stale_temps(tmp_path / "train")) == sorted(mine)
    assert sorted(p for p in tmp_path.iterdir()) == sorted(others)


def test_temporary_names_are_ignored_by_git_and_dvc():
    leftovers = ["metrics/.train.json.k2j4_x9q.tmp", "metrics/.sweep.abcdefgh.old.tmp", "data/.raw.12345678.tmp"]
    git = subprocess.run(["git", "check-ignore", "--no-index", *leftovers], cwd=ROOT, capture_output=True, text=True)
    assert git.stdout.split() == leftovers
    dvc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "check-ignore", *leftovers], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert dvc.stdout.split() == leftovers, dvc.stderr
    # and an ordinary output is not ignored
    assert subprocess.run(["git", "check-ignore", "--no-index", "-q", "metrics/train.json"], cwd=ROOT).returncode == 1


# --- CI: the pipeline's outputs are compared like with like (.github/workflows/ci.yml) -------------------


def test_ci_diffs_a_tiny_run_against_a_tiny_baseline_with_pinned_actions_and_no_hidden_failures():
    import re

    import yaml

    text = (ROOT / ".github/workflows/ci.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {"contents": "read"}
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = [step["uses"] for step in steps if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert "|| true" not in text
    pipeline = workflow["jobs"]["pipeline"]["steps"]
    runs = [step.get("run", "") for step in pipeline]
    baseline = next(r for r in runs if "git worktree add" in r)
    assert "tests/tiny.py setup" in baseline and "dvc repro" in baseline
    diff = next(r for r in runs if "dvc metrics diff" in r)
    assert "dvc metrics diff ci-baseline" in diff and "origin/main" not in diff


# --- issue 25: two writers of one output -------------------------------------------------------------------

FIRST_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from transferlm.core.outputs import staged_outputs

    with staged_outputs(Path(sys.argv[1])) as (tmp,):
        tmp.write_text("first")
        print("writing", flush=True)
        sys.stdin.readline()  # hold the temporary until the second writer has swept
""")


def test_a_second_writer_never_deletes_the_first_ones_live_temporary(tmp_path):
    final = tmp_path / "metrics.json"
    first = subprocess.Popen([sys.executable, "-c", FIRST_WRITER, str(final)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "writing\n"
        live = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(live) == 1 and f".{first.pid}.tmp" in live[0].name
        with staged_outputs(final) as (tmp,):  # the second writer: its sweep must spare the live temporary
            tmp.write_text("second")
        assert live[0].read_text() == "first" and final.read_text() == "second"
        first.stdin.write("go\n")
        first.stdin.close()
        assert first.wait(timeout=60) == 0  # was a traceback: its temporary had been deleted
    finally:
        first.kill()
        first.wait()
    assert final.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_only_temporaries_whose_writer_has_ended_are_stale(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".train.abcd1234.{int(ended.stdout)}.tmp"
    dead_old = tmp_path / f".train.abcd5678.{int(ended.stdout)}.old.tmp"
    live = tmp_path / f".train.zzzz9999.{os.getpid()}.tmp"
    for path in (dead, dead_old, live):
        path.mkdir()
    assert sorted(remove_stale_temps(tmp_path / "train")) == sorted([dead, dead_old])
    assert list(tmp_path.iterdir()) == [live]
