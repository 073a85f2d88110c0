"""Reading the pipeline's own JSON artifacts: one reader per artifact, each failing with the stage to run.

A stage that only reads what earlier stages wrote (a summary, the report) imports this and core/ alone, so
editing the training code does not rerun it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transferlm.core import paths
from transferlm.core.errors import InputError


def read_json(path: Path, stage: str) -> Any:
    """The JSON at `path`, or a one-line error that names the stage that writes it."""
    if not path.is_file():
        raise InputError(f"{path}: not found (run the {stage} stage first)")
    return _parse(path)


def read_optional(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The JSON object at `path`, holding every key in `required`; None where no stage has written it yet
    (the report shows such a section as not available rather than failing)."""
    if not path.is_file():
        return None
    data = _parse(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(f"{path}: missing key {missing[0]!r}")
    return data


def read_jsonl_optional(path: Path) -> list[Any] | None:
    """The rows of a JSON-lines file (blank lines skipped), or None where it is not there."""
    if not path.is_file():
        return None
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number}: not valid JSON") from None
    return rows


def _parse(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None


def zero_shot(path: Path = paths.ZEROSHOT) -> dict:
    """metrics/zeroshot.json: the base model's held-out loss before any training."""
    return read_json(path, "zeroshot")


def zero_shot_loss(path: Path = paths.ZEROSHOT) -> float:
    return float(zero_shot(path)["loss"])


def heldout_bytes_per_token(path: Path = paths.ZEROSHOT) -> float:
    """UTF-8 bytes per scored held-out token (the zeroshot stage measures it): nats/token -> bits/byte."""
    return float(zero_shot(path)["bytes_per_token"])


def block_size(path: Path = paths.TOKENIZE_METRICS) -> int:
    """Tokens per training block, as the tokenize stage packed them."""
    return int(read_json(path, "tokenize")["block_size"])


def recommended(path: Path = paths.RECOMMENDED) -> dict:
    """The study's choice of optimizer and lr (metrics/study/recommended.json)."""
    return read_json(path, "study_summary")


def study_summary(path: Path = paths.STUDY_SUMMARY) -> dict:
    return read_json(path, "study_summary")


def run_metrics(folder: Path) -> dict:
    """A training run folder's metrics.json (dvclive's layout)."""
    return read_json(folder / "metrics.json", "training")


def best_scratch_size(sizes: list[str], ladder_dir: Path = paths.LADDER) -> str:
    """The ladder size with the lowest final held-out loss at the fine-tune's budget."""
    losses = {}
    for size in sizes:
        loss = read_json(ladder_dir / size / "metrics.json", f"scratch@{size}")["final_val_loss"]
        losses[size] = loss if loss is not None and math.isfinite(loss) else math.inf
    return min(losses, key=losses.get)


def compared_models(scratch_sizes: list[str]) -> dict[str, Path]:
    """The models that generate and evaluate compare: base, fine-tuned, and the best from-scratch size."""
    return {"base": paths.BASE_MODEL, "finetuned": paths.FINETUNED_MODEL,
            "scratch": paths.scratch_model(best_scratch_size(scratch_sizes))}
