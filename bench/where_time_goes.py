"""Where the last `dvc repro`'s time went: training steps, held-out evaluation, and everything else.

    python bench/where_time_goes.py [--root .] [--json out.json]

Reads only what a run left behind, so it costs nothing and can be pointed at any checkout:
- each stage's wall-clock (metrics/timings/<stage>.json, written by every stage script);
- the outputs dvc.lock lists for each stage, and in them every training run's metrics.json and curves.

Per stage it splits the wall-clock into
- training: the runs' time inside their loops (metrics.json "seconds") less their evaluations;
- evaluation: each held-out point's time after the training step before it (the val curve's seconds less
  the train curve's at the same step; the sample text logged with it included);
- other: the rest (interpreter start, imports, model load, the precision probe, dvclive's set-up, writing
  outputs), and all of a stage that trains nothing (fetch, tokenize, zeroshot, generate, evaluate...).
It prints a table and the share of the whole run that is not training steps. Timings of stages that ran at
different times (a partial rerun) are summed as they are: the table says which stages it found.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from transferlm.core import artifacts, curves, paths


def stage_outputs(lock_file: Path) -> dict[str, list[Path]]:
    """Each stage's outputs as dvc.lock records them (foreach stages expanded: `scratch@s`)."""
    stages = (yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {name: [Path(out["path"]) for out in stage.get("outs", [])] for name, stage in stages.items()}


def run_times(folder: Path) -> tuple[float, float, int]:
    """(seconds in the loop, of which evaluating, runs) of every training run below `folder`."""
    loop = evaluation = 0.0
    runs = 0
    for metrics_file in sorted(folder.glob("**/metrics.json")) if folder.is_dir() else []:
        metrics = artifacts.run_metrics(metrics_file.parent)
        if "seconds" not in metrics or "steps" not in metrics:  # not a training run's metrics
            continue
        runs += 1
        loop += metrics["seconds"]
        train = {row["step"]: row["seconds"] for row in curves.read_curve(metrics_file.parent, "train")}
        val = curves.read_curve(metrics_file.parent, "val")
        evaluation += sum(row["seconds"] - train[row["step"]] for row in val if row["step"] in train)
    return loop, evaluation, runs


def breakdown(root: Path) -> dict:
    """Per stage (in dvc.lock's order) and in all: wall, training, evaluation and other seconds."""
    outputs = stage_outputs(root / "dvc.lock")
    rows = []
    for stage, outs in outputs.items():
        timing = root / paths.TIMINGS / f"{stage}.json"
        if not timing.is_file():
            continue
        wall = float(artifacts.read_json(timing, stage)["seconds"])
        loop = evaluation = 0.0
        runs = 0
        for out in outs:
            out_loop, out_eval, out_runs = run_times(root / out)
            loop, evaluation, runs = loop + out_loop, evaluation + out_eval, runs + out_runs
        rows.append({"stage": stage, "runs": runs, "wall_s": wall, "training_s": loop - evaluation,
                     "evaluation_s": evaluation, "other_s": wall - loop})
    columns = ("wall_s", "training_s", "evaluation_s", "other_s")
    total = {key: sum(row[key] for row in rows) for key in columns}  # summed before rounding
    wall = total["wall_s"] or 1.0
    shares = {"not_training_share": 1 - total["training_s"] / wall, "evaluation_share": total["evaluation_s"] / wall,
              "other_share": total["other_s"] / wall}
    for row in [*rows, total]:
        row.update({key: round(row[key], 1) for key in columns})
    total.update({key: round(value, 4) for key, value in shares.items()})
    return {"stages": rows, "total": total}


def print_table(report: dict) -> None:
    print(f"{'stage':28s} {'runs':>4s} {'wall s':>8s} {'training':>9s} {'eval':>7s} {'other':>7s} "
          f"{'not training':>12s}")
    for row in report["stages"]:
        share = 1 - row["training_s"] / row["wall_s"] if row["wall_s"] else 0.0
        print(f"{row['stage']:28s} {row['runs']:4d} {row['wall_s']:8.1f} {row['training_s']:9.1f} "
              f"{row['evaluation_s']:7.1f} {row['other_s']:7.1f} {share:12.1%}")
    t = report["total"]
    print(f"{'all stages':28s} {'':4s} {t['wall_s']:8.1f} {t['training_s']:9.1f} {t['evaluation_s']:7.1f} "
          f"{t['other_s']:7.1f} {t['not_training_share']:12.1%}")
    print(f"not training: {t['not_training_share']:.1%} of the run's stage time "
          f"(held-out evaluation {t['evaluation_share']:.1%}, other {t['other_share']:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="a checkout after `dvc repro`")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report = breakdown(args.root)
    if not report["stages"]:
        raise SystemExit(f"{args.root / paths.TIMINGS}: no stage timings (run `dvc repro` first)")
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
