"""A run's metrics and loss curves, logged with dvclive while the run goes, and read back.

A run folder is dvclive's layout:
- metrics.json: while training, the latest logged values and the step (what `dvc exp show` shows of a
  running experiment); once the run ends, the run's metrics (`RunResult.metrics`) and its last step;
- params.yaml: the run's settings;
- plots/metrics/train/{loss,lr,tokens,flops,seconds}.tsv: one row per optimizer step;
- plots/metrics/val/{loss,tokens,flops,seconds}.tsv: one row per held-out measurement (step 0 first);
- samples.jsonl (runs that sample while training): at each held-out measurement, the greedy continuation
  of one held-out prompt, so the text can be read changing from step 0 to the end.
Every TSV has the columns `step` and its series' name; dvc.yaml's plots take x from one series and y
from another of the same kind (DVC joins them row by row).

In memory (and in checkpoints) a curve is a list of rows keyed by SERIES plus `step`; the held-out row
calls its loss `val_loss` so that it never mixes up with a training loss once rows leave the run.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from transferlm.core.errors import InputError

SERIES = {
    "train": ("loss", "lr", "tokens", "flops", "seconds"),
    "val": ("val_loss", "tokens", "flops", "seconds"),
}
METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.jsonl"


def _series_name(kind: str, key: str) -> str:
    return f"{kind}/{key.removeprefix('val_')}"  # val/loss.tsv, not val/val_loss.tsv


def series_path(folder: Path, kind: str, key: str) -> Path:
    """The TSV of one series, e.g. series_path(run, "val", "val_loss") -> run/plots/metrics/val/loss.tsv."""
    return Path(folder) / "plots" / "metrics" / f"{_series_name(kind, key)}.tsv"


def _open_live(folder: Path):
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    # save_dvc_exp/dvcyaml off: dvc.yaml declares these files, and `dvc exp run` saves experiments.
    options = {"dir": str(folder), "save_dvc_exp": False, "dvcyaml": None, "report": None}
    try:
        return Live(**options)
    except SCMError:  # dvclive reads git's HEAD, which a repository has only after its first commit

        class FilesOnly(Live):
            def _init_dvc(self):  # no experiment name or baseline commit to record yet: the files alone
                pass

        return FilesOnly(**options)


class CurveLog:
    """dvclive's `Live` over one run folder; a no-op where `folder` is None (ranks other than the main one).

    `resumed` curves (from a checkpoint) are written again first, so that a resumed run's folder is the
    uninterrupted run's folder: rows past the checkpoint, logged before a kill, are never kept.
    """

    def __init__(self, folder: Path | None, settings: dict, resumed: dict | None = None):
        self.live = None
        if folder is None:
            return
        shutil.rmtree(folder, ignore_errors=True)  # as DVC does before a stage: no file of an older run stays
        Path(folder).mkdir(parents=True)
        self.live = _open_live(Path(folder))
        self.live.log_params(json.loads(json.dumps(settings, default=str)))  # tuples -> lists, paths -> str
        for kind in ("val", "train"):
            for row in (resumed or {}).get(kind, []):
                self._log(kind, row)
        for row in (resumed or {}).get("samples", []):
            self._write_sample(row)
        self.live.make_summary()

    def _log(self, kind: str, row: dict) -> None:
        self.live.step = int(row["step"])
        for key in SERIES[kind]:
            self.live.log_metric(_series_name(kind, key), row[key])

    def log(self, kind: str, row: dict) -> None:
        """One row of the "train" or "val" curve; metrics.json follows at once."""
        if self.live is not None:
            self._log(kind, row)
            self.live.make_summary()

    def sample(self, row: dict) -> None:
        """One step's sample ({"step", "prompt", "text"}), appended to samples.jsonl."""
        if self.live is not None:
            self._write_sample(row)

    def _write_sample(self, row: dict) -> None:
        with (Path(self.live.dir) / SAMPLES_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self, metrics: dict) -> None:
        """metrics.json becomes the run's metrics (plus its last step)."""
        if self.live is not None:
            self.live.summary = dict(metrics)
            self.live.end()


def read_curve(folder: Path, kind: str) -> list[dict]:
    """A run's "train" or "val" curve as rows of floats (keys: `step` and SERIES[kind]), ordered by step."""
    columns: dict[str, dict[int, float]] = {}
    for key in SERIES[kind]:
        path = series_path(folder, kind, key)
        if not path.is_file():
            raise InputError(f"{path}: not found (run the stage that writes {folder} first)")
        name = path.stem
        try:
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            columns[key] = {int(r["step"]): float(r[name]) for r in rows}
        except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error):
            raise InputError(f"{path}: not a dvclive series (columns 'step' and '{name}', numbers)") from None
        if not rows:
            raise InputError(f"{path}: no rows")
    steps = sorted(set.intersection(*(set(c) for c in columns.values())))
    return [{"step": step, **{key: columns[key][step] for key in SERIES[kind]}} for step in steps]



def read_samples(folder: Path) -> list[dict]:
    """A run's samples while training (empty when it logged none), ordered by step."""
    path = Path(folder) / SAMPLES_FILE
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return sorted(rows, key=lambda r: int(r["step"]))
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a samples file (JSON lines with step, prompt, text)") from None
