"""A stage script run in a folder laid out like the project (models/, metrics/, params.yaml), without DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import ROOT as REPO


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"TRANSFERLM_LOG": "WARNING", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / script), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def make_workspace(root: Path, tiny_model_dir: Path, generate: dict) -> Path:
    """models/{base,finetuned,scratch/full} (copies of the tiny model), the ladder's metrics that make `full`
    the best scratch size, and params.yaml (the repo's, tiny values)."""
    for name in ("base", "finetuned", "scratch/full"):
        shutil.copytree(tiny_model_dir, root / "models" / name)
    (root / "metrics/ladder/full").mkdir(parents=True)
    (root / "metrics/ladder/full/metrics.json").write_text('{"final_val_loss": 5.0}')
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generate"] |= generate
    params["scratch"] |= {"sizes": ["full"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root
