"""The optimizer x learning-rate grid: one short run per grid point, then one table of them all."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from pathlib import Path

from transferlm.errors import InputError
from transferlm.params import SweepParams, TrainParams

log = logging.getLogger(__name__)


def run_config(train: TrainParams, sweep: SweepParams, optimizer: str, lr: float) -> TrainParams:
    """A sweep run: the fine-tune's settings with this grid point's optimizer and lr, on the sweep's budget."""
    return dataclasses.replace(
        train,
        init="pretrained",
        method="full",
        optimizer=optimizer,
        lr=lr,
        max_steps=sweep.max_steps,
        warmup_steps=sweep.warmup_steps,
        eval_every=sweep.eval_every,
        save_every=0,  # runs are short; a killed one simply starts again
    )


def run_name(optimizer: str, lr: float) -> str:
    # Must match dvc.yaml's `metrics/sweep/${item.optimizer}-${item.lr}`: DVC renders floats with str().
    return f"{optimizer}-{lr}"


def summarize(sweep_dir: Path, sweep: SweepParams) -> tuple[dict, list[dict], list[dict]]:
    """Collect the current grid's runs: (metrics/sweep.json, best_val_loss rows, val_loss rows)."""
    runs, best_rows, curve_rows = [], [], []
    for optimizer in sweep.optimizers:
        for lr in sweep.lrs:
            name = run_name(optimizer, lr)
            run_dir = sweep_dir / name
            metrics_file = run_dir / "metrics.json"
            if not metrics_file.is_file():
                raise InputError(f"{metrics_file}: missing (run `dvc repro sweep` first)")
            m = json.loads(metrics_file.read_text(encoding="utf-8"))
            runs.append({
                "optimizer": optimizer,
                "lr": lr,
                "final_val_loss": m["final_val_loss"],
                "best_val_loss": m["best_val_loss"],
                "diverged": m["diverged"],
                "seconds": m["seconds"],
                "steps": m["steps"],
            })
            best_rows.append({"optimizer": optimizer, "lr": lr, "best_val_loss": m["best_val_loss"]})
            with (run_dir / "val_loss.csv").open(encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    curve_rows.append({"run": name, "optimizer": optimizer, "lr": lr, "step": int(row["step"]),
                                       "tokens": int(row["tokens"]), "val_loss": float(row["val_loss"])})
    healthy = [r for r in runs if not r["diverged"] and math.isfinite(r["best_val_loss"])]
    best = min(healthy, key=lambda r: r["best_val_loss"]) if healthy else None
    summary = {
        "runs": runs,
        "best": {k: best[k] for k in ("optimizer", "lr", "best_val_loss")} if best else None,
        "diverged": sum(r["diverged"] for r in runs),
    }
    if best:
        log.info("sweep: best %s lr %g, validation loss %.4f; %d of %d runs diverged",
                 best["optimizer"], best["lr"], best["best_val_loss"], summary["diverged"], len(runs))
    return summary, best_rows, curve_rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
