"""The report's figures: pretrained vs scratch curves, the sweep heatmap and the sweep curves.

Each function takes already-loaded tables and writes one PNG; the report module decides what to plot.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from transferlm.scaling import Fit  # noqa: E402

DPI = 120
FINETUNE_COLOR, SCRATCH_COLOR, BASE_COLOR = "tab:blue", "tab:orange", "tab:gray"
MAX_FIT_REACH = 1e3  # draw the extrapolated fit at most this far beyond the last measured point


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version string: same inputs, same bytes
    plt.close(fig)


def plot_pretrained_vs_scratch(
    finetune: pd.DataFrame,
    scratch: pd.DataFrame,
    zero_shot_loss: float,
    fit: Fit | None,
    target_loss: float,
    compute_needed: float | None,
    path: Path,
) -> None:
    """Validation loss against tokens, FLOPs and seconds; log x, so step 0 shows as the zero-shot line."""
    axes_spec = [
        ("tokens", "training tokens (log scale)", "vs tokens seen"),
        ("flops", "training compute, FLOPs (log scale)", "vs compute"),
        ("seconds", "wall-clock training time, s (log scale)", "vs wall-clock time"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    for ax, (column, xlabel, title) in zip(axes, axes_spec):
        for frame, label, color in (
            (finetune, "fine-tuned from pretrained", FINETUNE_COLOR),
            (scratch, "trained from scratch", SCRATCH_COLOR),
        ):
            after_start = frame[frame[column] > 0]
            ax.plot(after_start[column], after_start["val_loss"], "o-", color=color, label=label, ms=4)
        ax.axhline(zero_shot_loss, color=BASE_COLOR, ls=":", label="base model, zero-shot (step 0)")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"Validation loss {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation loss (nats/token)")

    measured = scratch.loc[scratch["flops"] > 0, "flops"]
    if fit is not None and len(measured):
        end = measured.max()
        if compute_needed is not None:
            end = max(end, min(compute_needed, measured.max() * MAX_FIT_REACH))
        xs = np.geomspace(measured.min(), end, 200)
        fit_label = f"scratch power-law fit{' (extrapolated)' if end > measured.max() else ''}"
        axes[1].plot(xs, fit.loss_at(xs), "--", color=SCRATCH_COLOR, alpha=0.8, label=fit_label)
        if compute_needed is not None and compute_needed <= end:
            axes[1].plot([compute_needed], [target_loss], "*", color="black", ms=12,
                         label="fit reaches fine-tune's final loss")
    for ax in axes:
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_sweep_heatmap(runs: list[dict], optimizers: list[str], lrs: list[float], path: Path) -> None:
    """Best validation loss per optimizer x lr; diverged cells hatched grey, missing cells blank."""
    grid = np.full((len(optimizers), len(lrs)), np.nan)
    diverged = np.zeros_like(grid, dtype=bool)
    present = np.zeros_like(grid, dtype=bool)
    for run in runs:
        i, j = optimizers.index(run["optimizer"]), lrs.index(run["lr"])
        present[i, j] = True
        diverged[i, j] = bool(run["diverged"])
        if not diverged[i, j] and math.isfinite(run["best_val_loss"]):
            grid[i, j] = run["best_val_loss"]

    fig, ax = plt.subplots(figsize=(1.6 * len(lrs) + 3, 0.9 * len(optimizers) + 2))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis_r", aspect="auto")
    ax.set_facecolor("lightgray")  # shows through the masked (diverged / missing) cells
    fig.colorbar(image, ax=ax, label="best validation loss (nats/token)")
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(optimizers)):
        for j in range(len(lrs)):
            if diverged[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx", ec="dimgray"))
                ax.text(j, i, "diverged", ha="center", va="center", fontsize=9, weight="bold", color="darkred")
            elif not present[i, j]:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=9, color="dimgray")
            elif np.isfinite(grid[i, j]):
                color = "white" if grid[i, j] > middle else "black"
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=10, color=color)
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(optimizers)), optimizers)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("optimizer")
    ax.set_title("Sweep: best validation loss (lower is better)")
    _save(fig, path)


def plot_sweep_curves(curves: pd.DataFrame, diverged: set[tuple[str, float]], path: Path) -> None:
    """One subplot per optimizer, one validation-loss line per lr; a diverged run ends in an x."""
    optimizers = list(dict.fromkeys(curves["optimizer"]))
    fig, axes = plt.subplots(1, len(optimizers), figsize=(5 * len(optimizers), 4.2), sharey=True, squeeze=False)
    finite = curves["val_loss"][np.isfinite(curves["val_loss"])]
    start_losses = curves.loc[curves["step"] == curves["step"].min(), "val_loss"]
    # Diverged runs shoot off to huge losses; keep the axis on the range where the comparison is.
    top = min(finite.max(), 1.5 * start_losses[np.isfinite(start_losses)].max()) if len(finite) else 1.0
    bottom = finite.min() if len(finite) else 0.0
    margin = 0.05 * max(top - bottom, 1e-3)
    for ax, optimizer in zip(axes[0], optimizers):
        rows = curves[curves["optimizer"] == optimizer]
        for lr, run in sorted(rows.groupby("lr"), key=lambda item: item[0]):
            run = run.sort_values("step")
            (line,) = ax.plot(run["step"], run["val_loss"].clip(upper=top + margin), "o-", ms=3,
                              label=f"lr {lr:g}")
            if (optimizer, lr) in diverged:
                last = run.iloc[-1]
                y = last["val_loss"] if math.isfinite(last["val_loss"]) else math.inf  # NaN: off the chart
                ax.plot([last["step"]], [min(y, top + margin)], "x", color=line.get_color(), ms=10, mew=2,
                        clip_on=False)
                line.set_label(f"lr {lr:g} (diverged)")
        ax.set_title(optimizer)
        ax.set_xlabel("training step")
        ax.set_ylim(bottom - margin, top + margin)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation loss (nats/token)")
    fig.suptitle("Sweep: validation loss per optimizer and learning rate")
    _save(fig, path)
