"""Batch sizes compared at equal training tokens and at equal wall-clock."""

from __future__ import annotations

import math
from collections.abc import Sequence


def loss_by(val_curve: Sequence[dict], seconds: float) -> float | None:
    """The last held-out loss a run had measured by `seconds` of its wall-clock (None before any)."""
    measured = [r["val_loss"] for r in val_curve if r["seconds"] <= seconds + 1e-9]
    return measured[-1] if measured else None


def batch_size_summary(runs: Sequence[dict], *, rule: str, base_batch: int, base_lr: float) -> dict:
    """Batch sizes at equal training tokens: each run's final held-out loss and wall-clock, the best at equal
    tokens (lowest final loss), and the best at equal time: the lowest loss measured by the time the
    quickest run had finished."""
    rows = [{"batch_size": m["batch_size"], "lr": m["lr"], "steps": m["steps"], "tokens": m["tokens"],
             "seconds": m["seconds"], "tokens_per_s": m["tokens_per_s"], "final_val_loss": m["final_val_loss"],
             "diverged": m["diverged"]} for m in runs]
    finite = [r for r in rows if r["final_val_loss"] is not None and math.isfinite(r["final_val_loss"])]
    equal_time = min(m["seconds"] for m in runs)
    at_time = {m["batch_size"]: loss_by(m["val_curve"], equal_time) for m in runs}
    timed = {b: v for b, v in at_time.items() if v is not None and math.isfinite(v)}
    return {
        "rule": rule, "base_batch_size": base_batch, "base_lr": base_lr, "runs": rows,
        "best_at_equal_tokens": min(finite, key=lambda r: r["final_val_loss"])["batch_size"] if finite else None,
        "equal_time_seconds": equal_time,
        "loss_at_equal_time": {str(b): v for b, v in at_time.items()},
        "best_at_equal_time": min(timed, key=timed.get) if timed else None,
    }
