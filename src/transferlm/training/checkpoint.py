"""Resumable training state: save every N steps, resume the same experiment after a kill.

A checkpoint is a folder `step-N` holding the weights (safetensors), the optimizer, scheduler and RNG
state (a plain tensor dict, loaded with torch.load(weights_only=True): no pickle is executed), and
progress.json (step, seconds, curves, and the fingerprint of the experiment). The fingerprint hashes
the run's settings and the *content* of its inputs (tokenized data, base model), so a checkpoint of
other params or of changed data with the same file sizes is never resumed into. A checkpoint that can't
be read is logged and skipped: the run starts over rather than stopping with a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
WEIGHTS_FILE = "model.safetensors"
PROGRESS_FILE = "progress.json"


def content_hash(*paths: Path) -> str:
    """sha256 over the relative names and bytes of every file below `paths` (in a fixed order)."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode() + b"\0")
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def fingerprint(settings: dict, inputs_hash: str) -> str:
    blob = json.dumps({"settings": settings, "inputs": inputs_hash}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpoints:
    """The checkpoints of one run in `folder`; only the main process writes, every process reads.

    `model` is the plain (unwrapped) model; `optimizer` and `scheduler` as the loop holds them.
    """

    def __init__(self, folder: Path, fingerprint: str, accelerator):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.accelerator = accelerator

    def save(self, step: int, seconds: float, model, optimizer, scheduler, curves: dict,
             best: tuple[int, dict | None] | None = None) -> None:
        """Write to step-N.partial, then rename: a kill mid-save leaves the previous checkpoint intact.

        `best` (early stopping): (step, weights) of the best held-out point so far, kept beside the steps as
        best-step-N.safetensors, written only when that point changed.
        """
        from safetensors.torch import save_file, save_model

        accelerator = self.accelerator
        accelerator.wait_for_everyone()  # every rank has finished the step being saved
        if accelerator.is_main_process:
            target = self.folder / f"step-{step}"
            partial = self.folder / f"step-{step}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            save_model(model, str(partial / WEIGHTS_FILE))
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": torch.get_rng_state()}
            if torch.cuda.is_available():
                state["cuda_rng"] = torch.cuda.get_rng_state_all()
            torch.save(state, partial / STATE_FILE)
            progress = {"fingerprint": self.fingerprint, "step": step, "seconds": seconds, "curves": curves}
            (partial / PROGRESS_FILE).write_text(json.dumps(progress), encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)  # a stale step-N of a run that started over
            partial.rename(target)
            for old in self.folder.glob("step-*"):
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
            if best is not None and best[1] is not None and not self._best_file(best[0]).is_file():
                partial_best = self.folder / "best.partial"
                save_file(best[1], str(partial_best))
                partial_best.rename(self._best_file(best[0]))
                for old in self.folder.glob("best-step-*.safetensors"):
                    if old != self._best_file(best[0]):
                        old.unlink(missing_ok=True)
            log.info("checkpoint saved at step %d", step)
        accelerator.wait_for_everyone()  # nobody goes on (or resumes) while the folder is being swapped

    def _latest(self) -> Path | None:
        steps = []
        for path in self.folder.glob("step-*"):
            number = path.name.removeprefix("step-")
            if number.isdigit():
                steps.append((int(number), path))
        return max(steps)[1] if steps else None

    def resume(self, model, optimizer, scheduler) -> tuple[int, float, dict] | None:
        """Load the latest checkpoint of this experiment: (step, seconds, curves), or None to start over."""
        from safetensors.torch import load_file

        latest = self._latest()
        if latest is None:
            return None
        try:
            progress = json.loads((latest / PROGRESS_FILE).read_text(encoding="utf-8"))
            if progress.get("fingerprint") != self.fingerprint:
                log.info("checkpoint in %s is from different params, levers or data; starting over", self.folder)
                return None
            weights = load_file(str(latest / WEIGHTS_FILE))
            state = torch.load(latest / STATE_FILE, weights_only=True)
            step, seconds, curves = int(progress["step"]), float(progress["seconds"]), dict(progress["curves"])
        except Exception as exc:  # truncated, corrupt or foreign files: never worth a traceback
            log.warning("checkpoint %s is unreadable (%s: %s); starting over", latest, type(exc).__name__, exc)
            return None
        # save_model dropped tied duplicates (lm_head = embed_tokens); strict=False lets them stay tied.
        _, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected:
            log.warning("checkpoint %s does not fit this model; starting over", latest)
            return None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return step, seconds, curves

    def _best_file(self, step: int) -> Path:
        return self.folder / f"best-step-{step}.safetensors"

    def load_best(self, step: int) -> dict | None:
        """The weights of the best point at `step` saved beside the checkpoints, or None (logged) if absent."""
        from safetensors.torch import load_file

        path = self._best_file(step)
        try:
            return load_file(str(path))
        except Exception as exc:  # missing or unreadable: the run goes on, keeping only later bests
            log.warning("best weights of step %d not readable in %s (%s); keeping only later bests",
                        step, self.folder, type(exc).__name__)
            return None

    def clear(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(self.folder, ignore_errors=True)
