"""bench/where_time_goes.py on the shared tiny run: every timed stage is split, and the parts add up."""

import json
import subprocess
import sys

import pytest
from where_time_goes import breakdown, run_times

from helpers import ROOT
from transferlm.core.curves import SERIES, series_path


@pytest.mark.slow  # the shared tiny `dvc repro`
def test_each_stage_splits_into_training_evaluation_and_the_rest(tiny_repo):
    report = breakdown(tiny_repo.path)
    rows = {row["stage"]: row for row in report["stages"]}
    timed = {p.stem for p in (tiny_repo.path / "metrics/timings").glob("*.json")}
    assert set(rows) == timed
    for row in rows.values():  # parts of the wall-clock, none negative (rounding aside)
        assert row["training_s"] >= 0 and row["evaluation_s"] >= 0 and row["other_s"] >= -0.1
        assert row["training_s"] + row["evaluation_s"] + row["other_s"] == pytest.approx(row["wall_s"], abs=0.2)
    finetune = json.loads((tiny_repo.path / "metrics/finetune/metrics.json").read_text())
    assert rows["train"]["runs"] == 1  # the loop's own time, split into its steps and its evaluations
    assert rows["train"]["training_s"] + rows["train"]["evaluation_s"] == pytest.approx(finetune["seconds"], abs=0.2)
    assert rows["study_grid"]["runs"] == len(list((tiny_repo.path / "metrics/study/round0").glob("*/metrics.json")))
    for stage in ("fetch", "tokenize", "zeroshot", "generate", "report"):  # no training: all of it "other"
        assert rows[stage]["runs"] == 0 and rows[stage]["training_s"] == 0
    total = report["total"]
    assert total["wall_s"] == pytest.approx(sum(row["wall_s"] for row in rows.values()), abs=0.5)
    assert 0 < total["not_training_share"] < 1
    assert total["not_training_share"] == pytest.approx(total["evaluation_share"] + total["other_share"], abs=2e-3)


def test_evaluation_is_each_held_out_point_after_the_step_before_it(tmp_path):
    """Steps 1-4 take 1 s each; the evaluations after steps 2 and 4 take 0.5 s and 0.25 s."""
    run = tmp_path / "metrics/run"
    train = {"step": [1, 2, 3, 4], "seconds": [1.0, 2.0, 3.5, 4.5]}
    val = {"step": [2, 4], "seconds": [2.5, 4.75]}
    for kind, curve in (("train", train), ("val", val)):
        for key in SERIES[kind]:
            path = series_path(run, kind, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            values = curve["seconds"] if key == "seconds" else [0.0] * len(curve["step"])
            rows = "".join(f"{s}\t{v}\n" for s, v in zip(curve["step"], values, strict=True))
            path.write_text(f"step\t{path.stem}\n" + rows)
    (run / "metrics.json").write_text(json.dumps({"seconds": 4.75, "steps": 4}))
    assert run_times(tmp_path / "metrics") == (4.75, 0.75, 1)


@pytest.mark.slow
def test_the_script_prints_the_table_and_writes_the_json(tiny_repo, tmp_path):
    out = tmp_path / "where.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench/where_time_goes.py"), "--root", str(tiny_repo.path),
                             "--json", str(out)], capture_output=True, text=True, check=True)
    assert "all stages" in result.stdout and "not training:" in result.stdout
    assert json.loads(out.read_text())["stages"]


def test_a_checkout_without_timings_is_refused_in_one_line(tmp_path):
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    result = subprocess.run([sys.executable, str(ROOT / "bench/where_time_goes.py"), "--root", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "no stage timings" in result.stderr
