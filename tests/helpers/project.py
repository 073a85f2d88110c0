"""Scratch copies of this repository on tiny params: the one way the tests set up a project that runs `dvc`.

- `TinyProject.create(dest)`: a fresh copy (the files git would track, tiny model and params, one commit);
  nothing has run in it yet.
- `shared_tiny_run(...)`: that project after one whole `dvc repro`, built once per test session (once
  across pytest-xdist's workers, under a file lock) and then only read; see tests/conftest.py's `tiny_repo`.
- `TinyProject.clone(dest)`: a copy of a project as it stands, its DVC cache and run-cache included, for a
  test that changes params or reruns stages: it starts warm instead of running every stage again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers import HOOKS, ROOT
from helpers.tiny import setup_tiny_pipeline

BIN = Path(sys.executable).parent

# The committed default run's per-run folders (3.8 MB of run logs). A tiny run writes its own, so the
# copy leaves them behind rather than carrying files every tiny stage replaces (bench/gpu_check.sh too).
FULL_RUN_FOLDERS = ("metrics/study/", "metrics/ladder/", "metrics/fractions/", "metrics/scratch_seeds/",
                    "metrics/scratch_long/", "metrics/finetune/", "metrics/timings/")


def copy_repo(dest: Path) -> None:
    """This checkout's tracked and untracked-but-not-ignored files into dest (no outputs, no caches)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(FULL_RUN_FOLDERS):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def tiny_env(repo: Path, **extra: str) -> dict[str, str]:
    """The environment of a project's commands: the venv first on PATH, its own user cache (beside the
    project, so that neither a clone nor `git add -A` takes it along), a git identity."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TRANSFERLM_CACHE": str(repo.parent / f"{repo.name}-user-cache"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


@dataclass
class TinyProject:
    path: Path
    env: dict[str, str] = field(repr=False)

    def run(self, *cmd: str, check: bool = True, cwd: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=cwd or self.path, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    @classmethod
    def create(cls, dest: Path, env: dict[str, str] | None = None, commit: str = "tiny pipeline") -> TinyProject:
        """A fresh copy of the repository with the tiny model and params, committed to a new git repo."""
        dest.mkdir(parents=True, exist_ok=True)
        copy_repo(dest)
        setup_tiny_pipeline(dest)
        project = cls(dest, env or tiny_env(dest))
        project.run("git", "init", "-q")
        project.run("git", "add", "-A")
        project.run("git", "commit", "-qm", commit)
        return project

    def clone(self, dest: Path, env: dict[str, str] | None = None) -> TinyProject:
        """A copy of this project as it stands: work tree, git history, DVC cache and run-cache. DVC's
        scratch folder (.dvc/tmp: locks, the hash cache keyed by inode) stays behind; the copy rehashes."""
        shutil.copytree(self.path, dest, symlinks=True, ignore=_ignore_dvc_tmp(self.path))
        return TinyProject(dest, env or tiny_env(dest))

    def set_params(self, **sections: dict) -> None:
        """Overwrite keys of params.yaml, e.g. set_params(fetch={"corpus": ["scripts/"]})."""
        import yaml

        params = yaml.safe_load((self.path / "params.yaml").read_text())
        for section, values in sections.items():
            params[section] = {**params[section], **values}
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def json(self, name: str):
        return json.loads((self.path / name).read_text())


def _ignore_dvc_tmp(root: Path):
    tmp = root / ".dvc"

    def ignore(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder) == tmp else []
    return ignore


@dataclass
class SharedTinyRun:
    """The shared project after its one `dvc repro` of every stage: read it, never write to it."""
    project: TinyProject
    repro_stdout: str  # the first repro's output ("Running stage '...'" for every stage)
    params_trace: Path  # every params key each stage process read (tests/hooks/params_trace.py)

    @property
    def path(self) -> Path:
        return self.project.path

    def clone(self, dest: Path, env: dict[str, str] | None = None) -> TinyProject:
        return self.project.clone(dest, env)


def shared_tiny_run(root: Path, lock_root: Path | None = None) -> SharedTinyRun:
    """The tiny project in root/repo after one `dvc repro`, built by the first caller. With lock_root
    (pytest-xdist: the folder all workers' temp folders share) the build happens under a file lock there,
    so the first worker builds it and the others wait for it and reuse it; a failed build is not retried."""
    if lock_root is None:
        return _build(root)
    from filelock import FileLock

    with FileLock(str(lock_root / "tiny-repo.lock")):
        failed = root / "FAILED"
        if failed.is_file():
            raise AssertionError(f"the shared tiny pipeline failed in another worker:\n{failed.read_text()}")
        if (root / "DONE").is_file():
            return _load(root)
        try:
            return _build(root)
        except BaseException as exc:
            failed.write_text(str(exc))
            raise


def _env(root: Path, repo: Path) -> dict[str, str]:
    return tiny_env(repo,
                    # Every params key each stage reads, to hold against the `params:` lists of dvc.yaml.
                    TRANSFERLM_PARAMS_TRACE=str(root / "params-trace.jsonl"),
                    PYTHONPATH=str(HOOKS))  # installs that trace in every stage process


def _load(root: Path) -> SharedTinyRun:
    repo = root / "repo"
    return SharedTinyRun(TinyProject(repo, tiny_env(repo)), (root / "repro.log").read_text(),
                         root / "params-trace.jsonl")


def _build(root: Path) -> SharedTinyRun:
    root.mkdir(parents=True, exist_ok=True)
    repo = root / "repo"
    project = TinyProject.create(repo, env=_env(root, repo))
    first = project.run("dvc", "repro")
    (root / "repro.log").write_text(first.stdout)
    (root / "DONE").write_text("")
    return _load(root)
