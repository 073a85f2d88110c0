"""The report's figures: the from-scratch frontier against the fine-tune, the study's grid, the lr range
tests and data efficiency. Each function takes loaded tables and writes one PNG; the report decides what.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

DPI = 120
FINETUNE_COLOR, SCRATCH_COLOR, BASE_COLOR = "tab:blue", "tab:orange", "tab:gray"


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version string: same inputs, same bytes
    plt.close(fig)


def _finish_log_x(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def plot_frontier(scratch: dict[str, list[dict]], frontier: list[dict], finetune: list[dict], zero_shot: float,
                  finetune_flops: float, path: Path) -> None:
    """Held-out loss against training FLOPs: every scratch run, their frontier, the fine-tune, the base model."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, rows in scratch.items():
        pts = [(r["flops"], r["val_loss"]) for r in rows if r["flops"] > 0]
        ax.plot(*zip(*pts, strict=True), color=SCRATCH_COLOR, alpha=0.35, lw=1, marker=".", ms=3)
        ax.annotate(label, pts[-1], fontsize=7, color=SCRATCH_COLOR, xytext=(3, 0), textcoords="offset points")
    ax.step([p["flops"] for p in frontier], [p["val_loss"] for p in frontier], where="post", color=SCRATCH_COLOR,
            lw=2.2, label="best from scratch at each compute (frontier)")
    ft = [(r["flops"], r["val_loss"]) for r in finetune if r["flops"] > 0]
    ax.plot(*zip(*ft, strict=True), color=FINETUNE_COLOR, lw=2, marker="o", ms=4, label="fine-tune")
    ax.axhline(zero_shot, color=BASE_COLOR, ls="--", lw=1.2, label=f"base model before training ({zero_shot:.2f})")
    ax.axvline(finetune_flops, color=FINETUNE_COLOR, ls=":", lw=1, label="the comparison budget")
    _finish_log_x(fig, ax, "training FLOPs", "held-out loss (nats/token)", "Fine-tune vs the from-scratch frontier",
                  path)


def plot_study_grid(grid: list[dict], optimizers: list[str], lrs: list[float], path: Path) -> None:
    """Final held-out loss of every round-0 run; runs that got worse or diverged are labelled, not coloured."""
    cells = {(r["optimizer"], r["lr"]): r for r in grid}
    values = np.full((len(optimizers), len(lrs)), np.nan)
    for i, opt in enumerate(optimizers):
        for j, lr in enumerate(lrs):
            r = cells.get((opt, lr))
            if r and r["status"] == "improved":
                values[i, j] = r["final_val_loss"]
    fig, ax = plt.subplots(figsize=(1.3 * len(lrs) + 2, 0.6 * len(optimizers) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", aspect="auto")
    ax.set_facecolor("#dddddd")
    for i, opt in enumerate(optimizers):
        for j, lr in enumerate(lrs):
            r = cells.get((opt, lr))
            if r is None:
                text = "–"
            elif r["status"] == "diverged":
                text = "diverged"
            elif r["status"] != "improved":
                text = f"worse\n{r['final_val_loss']:.2f}"
            else:
                text = f"{r['final_val_loss']:.3f}"
            light = r is None or r["status"] != "improved" or image.norm(r["final_val_loss"]) < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if light else "white")
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(optimizers)), optimizers)
    ax.set_xlabel("learning rate")
    ax.set_title("Round 0: final held-out loss\n(grey: worse than no training, or diverged)", fontsize=10)
    fig.colorbar(image, ax=ax, label="held-out loss")
    _save(fig, path)


def plot_lr_find(rows: list[dict], marks: dict[str, dict], path: Path) -> None:
    """The lr range tests: smoothed training loss against lr, the suggestion and the grid's best lr marked."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, optimizer in enumerate(dict.fromkeys(r["optimizer"] for r in rows)):
        color = f"C{k}"
        mine = [r for r in rows if r["optimizer"] == optimizer and math.isfinite(r["smoothed"])]
        ax.plot([r["lr"] for r in mine], [r["smoothed"] for r in mine], color=color, label=optimizer)
        mark = marks.get(optimizer, {})
        if mark.get("suggestion"):
            ax.axvline(mark["suggestion"], color=color, ls=":", lw=1)
        if mark.get("grid_best"):
            ax.axvline(mark["grid_best"], color=color, ls="--", lw=1)
    _finish_log_x(fig, ax, "learning rate (rising each step)", "training loss, smoothed",
                  "LR range tests (dotted: suggestion, dashed: the grid's best lr)", path)


def plot_data_efficiency(rows: list[dict], zero_shot: float, path: Path) -> None:
    """Held-out loss against the training tokens available: fine-tune and best scratch size."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    tokens = [r["finetune_tokens_available"] for r in rows]
    ax.plot(tokens, [r["finetune_loss"] for r in rows], marker="o", color=FINETUNE_COLOR, label="fine-tune")
    ax.plot(tokens, [r["scratch_loss_same_data"] for r in rows], marker="s", color=SCRATCH_COLOR,
            label="best scratch size, same data")
    ax.axhline(zero_shot, color=BASE_COLOR, ls="--", lw=1.2, label="base model before training")
    _finish_log_x(fig, ax, "training tokens available", "held-out loss (nats/token)", "Data efficiency", path)


def plot_epochs(runs: dict[str, list[dict]], zero_shot: float, path: Path) -> None:
    """Held-out loss after each epoch of the multi-epoch runs: where each stops improving and overfits."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (label, rows) in enumerate(runs.items()):
        ax.plot([r["epoch"] for r in rows], [r["val_loss"] for r in rows], marker="o", ms=3, color=f"C{k}",
                ls="-" if label.startswith("fine-tune") else "--", label=label)
    ax.axhline(zero_shot, color=BASE_COLOR, ls=":", lw=1.2, label="base model before training")
    ax.set_xlabel("epochs (training tokens seen / available)")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss against epochs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
