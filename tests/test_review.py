"""Blind review: the sheet and page hide the models, the key maps every id back, and ratings score right."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transferlm.errors import InputError, ParamError
from transferlm.params import EvaluateParams
from transferlm.review import (
    EXPORT_FORMAT,
    KEY_COLUMNS,
    SHEET_COLUMNS,
    build_pairs,
    build_review,
    score,
    score_sheet,
    sheet_token,
    to_csv,
    write_review,
)
from transferlm.review_stats import bradley_terry, mean_interval

REPO = Path(__file__).resolve().parents[1]
MODELS = ("base", "finetuned", "scratch")


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"TRANSFERLM_LOG": "WARNING"}
    command = [sys.executable, str(REPO / "stages" / script), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


KEYS = [(model, prompt, i) for model in MODELS for prompt in ("HAMLET:\n", "ROMEO:\n") for i in range(2)]
SAMPLES = [
    {"model": model, "prompt": prompt, "sample": i, "seed": 1 + i, "text": f"Line {n} <b>& so</b>", "new_tokens": 5}
    for n, (model, prompt, i) in enumerate(KEYS)
]


def write_pair(tmp_path, ratings: dict[str, tuple[str, str, str]]) -> tuple:
    """sheet.csv (filled with `ratings` per model) and review_key.csv for SAMPLES."""
    sheet, key = build_review(SAMPLES, seed=3)
    model_of = {row["id"]: row["model"] for row in key}
    for row in sheet:
        row["coherence"], row["relevance"], row["style"] = ratings[model_of[row["id"]]]
    sheet_path, key_path = tmp_path / "sheet.csv", tmp_path / "key.csv"
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    key_path.write_text(to_csv(key, KEY_COLUMNS))
    return sheet_path, key_path, sheet, key


def test_sheet_is_blind_shuffled_and_keyed(tmp_path):
    sheet, key = build_review(SAMPLES, seed=3)
    write_review(tmp_path / "review", sheet)
    for name in ("sheet.csv", "sheet.html"):
        content = (tmp_path / "review" / name).read_text().lower()
        assert not any(model in content for model in MODELS), name
    with open(tmp_path / "review" / "sheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == SHEET_COLUMNS
    assert [row["id"] for row in rows] == [f"S{i:03d}" for i in range(1, 13)]
    assert all(row["coherence"] == row["relevance"] == row["style"] == "" for row in rows)
    # The key maps every id to exactly one sample, and the order is shuffled but reproducible.
    assert [row["id"] for row in key] == [row["id"] for row in sheet]
    assert sorted((r["model"], r["prompt"], r["sample"]) for r in key) == sorted(
        (s["model"], s["prompt"], s["sample"]) for s in SAMPLES
    )
    assert [r["model"] for r in key] != [s["model"] for s in SAMPLES]
    assert build_review(SAMPLES, seed=3) == (sheet, key)
    readme = (tmp_path / "review" / "README.md").read_text()
    assert "1 to 5" in readme and "1 = not at all" in readme


def test_html_escapes_sample_text(tmp_path):
    sheet, _ = build_review([SAMPLES[0] | {"text": "<script>alert('x')</script> & more"}], seed=0)
    write_review(tmp_path / "review", sheet)
    page = (tmp_path / "review" / "sheet.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "1 = not at all" in page


def test_score_means_per_model_and_criterion(tmp_path):
    sheet_path, key_path, _, _ = write_pair(
        tmp_path, {"base": ("1", "2", "3"), "finetuned": ("5", " 4 ", "4.0"), "scratch": ("", "", "")}
    )
    scores = score_sheet(sheet_path, key_path)
    assert scores["models"] == {
        "base": {"rated": 4, "coherence": 1.0, "relevance": 2.0, "style": 3.0},
        "finetuned": {"rated": 4, "coherence": 5.0, "relevance": 4.0, "style": 4.0},
    }
    assert scores["rated"] == 8 and scores["skipped_blank"] == 4


def test_score_partly_rated_rows_average_what_is_there(tmp_path):
    sheet_path, key_path, sheet, key = write_pair(tmp_path, {m: ("3", "", "") for m in MODELS})
    first_base = next(r["id"] for r in key if r["model"] == "base")
    for row in sheet:
        if row["id"] == first_base:
            row["coherence"], row["style"] = "5", "2"
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    base = score_sheet(sheet_path, key_path)["models"]["base"]
    assert base == {"rated": 4, "coherence": (5 + 3 * 3) / 4, "relevance": None, "style": 2.0}


@pytest.mark.parametrize("bad", ["7", "0", "abc", "2.5"])
def test_bad_rating_names_the_row(tmp_path, bad):
    sheet_path, key_path, sheet, _ = write_pair(tmp_path, {m: ("3", "3", "3") for m in MODELS})
    sheet[4]["relevance"] = bad
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    with pytest.raises(InputError) as error:
        score_sheet(sheet_path, key_path)
    assert str(error.value) == f"{sheet_path}: row S005: relevance rating {bad!r} is not a whole number from 1 to 5"


def test_unknown_id_is_an_error(tmp_path):
    sheet_path, key_path, sheet, _ = write_pair(tmp_path, {m: ("3", "3", "3") for m in MODELS})
    sheet[0]["id"] = "S999"
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    with pytest.raises(InputError, match="row S999: id not found"):
        score_sheet(sheet_path, key_path)


def test_score_command_bad_rating_is_one_line(tmp_path):
    sheet_path, key_path, sheet, _ = write_pair(tmp_path, {m: ("3", "3", "3") for m in MODELS})
    sheet[1]["style"] = "great"
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    result = run_script("evaluate.py", "score", str(sheet_path), "--key", str(key_path), cwd=tmp_path)
    assert result.returncode == 1
    message = f"{sheet_path}: row S002: style rating 'great' is not a whole number from 1 to 5"
    assert result.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "metrics").exists()


# --- the review page, its export, and scoring several files ---------------------------------------


def export(ratings: list[dict], pairs: list[dict], criteria=("coherence", "relevance", "style")) -> dict:
    token = sheet_token(build_review(SAMPLES, seed=3)[0])
    return {"format": EXPORT_FORMAT, "sheet": token, "reviewer": "r", "criteria": list(criteria),
            "ratings": ratings, "pairs": pairs}  # fmt: skip


def keyed(tmp_path):
    sheet, key = build_review(SAMPLES, seed=3)
    key_path = tmp_path / "key.csv"
    key_path.write_text(to_csv(key, KEY_COLUMNS))
    ids = {}
    for row in key:
        ids.setdefault(row["model"], []).append(row["id"])
    return key_path, key, ids


def write_export(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_pairs_are_same_prompt_and_sample_different_models_and_blind(tmp_path):
    sheet, key = build_review(SAMPLES, seed=3)
    pairs = build_pairs(key, seed=3)
    by_id = {row["id"]: row for row in key}
    assert len(pairs) == 2 * 2 * 3  # (prompt, sample) groups x model pairs
    for pair in pairs:
        left, right = by_id[pair["left"]], by_id[pair["right"]]
        assert (left["prompt"], left["sample"]) == (right["prompt"], right["sample"])
        assert left["model"] != right["model"]
    assert {frozenset((by_id[p["left"]]["model"], by_id[p["right"]]["model"])) for p in pairs} == {
        frozenset(c) for c in (("base", "finetuned"), ("base", "scratch"), ("finetuned", "scratch"))
    }
    # sides are shuffled: the same model is not always on the left
    assert len({by_id[p["left"]]["model"] for p in pairs}) == 3
    write_review(tmp_path / "review", sheet, pairs)
    page = (tmp_path / "review" / "index.html").read_text()
    assert not any(model in page.lower() for model in MODELS)
    assert "<b>" not in page and "\\u003cb>" in page  # sample text cannot become markup
    assert all(row["id"] in page for row in sheet) and all(p["id"] in page for p in pairs)


def test_export_scores_known_means_win_rates_and_intervals(tmp_path):
    key_path, key, ids = keyed(tmp_path)
    ratings = [{"id": i, "coherence": 4, "relevance": 2, "style": 5, "note": ""} for i in ids["finetuned"]]
    ratings += [{"id": i, "coherence": 1 + n % 2, "note": "x"} for n, i in enumerate(ids["base"])]
    by_group = {}
    for row in key:
        by_group.setdefault((row["prompt"], row["sample"]), {})[row["model"]] = row["id"]
    pairs = []
    for n, group in enumerate(by_group.values()):  # finetuned beats base 3 times, 1 tie; beats scratch always
        pairs.append(
            {"id": f"P{n}", "left": group["base"], "right": group["finetuned"], "choice": "tie" if n == 0 else "right"}
        )
        pairs.append({"id": f"Q{n}", "left": group["finetuned"], "right": group["scratch"], "choice": "left"})
    scores = score([write_export(tmp_path, "a.json", export(ratings, pairs))], key_path)
    assert scores["models"]["finetuned"] == {"rated": 4, "coherence": 4.0, "relevance": 2.0, "style": 5.0}
    assert scores["models"]["base"] == {"rated": 4, "coherence": 1.5, "relevance": None, "style": None}
    assert scores["intervals"]["finetuned"] == {"coherence": [4.0, 4.0], "relevance": [2.0, 2.0], "style": [5.0, 5.0]}
    low, high = scores["intervals"]["base"]["coherence"]
    assert 1.0 <= low < 1.5 < high <= 2.0
    pair = scores["pairwise"]
    assert pair["comparisons"] == 8 and pair["ranking"] == ["finetuned", "base", "scratch"]
    assert pair["pairs"][0] == {
        "models": ["base", "finetuned"],
        "comparisons": 4,
        "wins": [0, 3],
        "ties": 1,
        "win_rate": 0.125,
    }
    assert pair["models"]["finetuned"]["win_rate"] == 7.5 / 8
    assert pair["models"]["scratch"]["win_rate"] == 0.0 and pair["models"]["base"]["win_rate"] == 0.125
    for m in pair["models"].values():
        assert m["strength_ci"][0] <= m["strength"] <= m["strength_ci"][1]
        assert m["win_rate_ci"][0] <= m["win_rate"] <= m["win_rate_ci"][1]
    assert score([tmp_path / "a.json"], key_path) == scores | {"files": [str(tmp_path / "a.json")]}  # seeded


def test_bradley_terry_two_models_closed_form():
    # finetuned: 3 wins and a tie -> 3.5 of 4 points, plus one virtual tie: P(win) = 4 / 5
    wins = np.array([[0.0, 0.5], [3.5, 0.0]])
    strength = bradley_terry(wins)
    assert strength == pytest.approx([-math.log(4) / 2, math.log(4) / 2])
    assert 1 / (1 + math.exp(strength[0] - strength[1])) == pytest.approx(0.8)


def test_bootstrap_interval_matches_normal_approximation():
    ratings = [1, 2, 3, 4, 5] * 20
    stats = mean_interval(ratings)
    half = 1.96 * np.std(ratings) / math.sqrt(len(ratings))
    assert stats["mean"] == 3.0 and stats["n"] == 100
    assert stats["ci"] == pytest.approx([3 - half, 3 + half], abs=0.04)


def test_several_reviewers_and_a_csv_combine(tmp_path):
    key_path, _, ids = keyed(tmp_path)
    first = write_export(tmp_path, "a.json", export([{"id": i, "style": 2} for i in ids["base"]], []))
    second = write_export(tmp_path, "b.json", export([{"id": i, "style": 4} for i in ids["base"]], []))
    sheet_path, key_path2, _, _ = write_pair(
        tmp_path, {"base": ("", "", "3"), "finetuned": ("", "", ""), "scratch": ("", "", "")}
    )
    scores = score([first, second, sheet_path], key_path)
    assert scores["models"]["base"]["style"] == 3.0 and scores["models"]["base"]["rated"] == 12
    assert scores["pairwise"] is None and scores["skipped_blank"] == 8


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["ratings"].append({"id": "S001", "style": 6}),
            "ratings[1] (S001): style rating 6 is not a whole number from 1 to 5",
        ),
        (lambda d: d["ratings"].append({"id": "S999", "style": 3}), "ratings[1] (S999): id 'S999' not found in"),
        (
            lambda d: d["pairs"].append({"id": "P1", "left": "S001", "right": "S002", "choice": "both"}),
            "pairs[0] (P1): choice 'both' is not one of left, tie, right",
        ),
        (lambda d: d.pop("format"), 'not a review export (no "format": "transferlm-review/1")'),
        (lambda d: d.update(sheet="0123"), "rates other samples than"),
    ],
)
def test_bad_export_is_one_line_error(tmp_path, change, problem):
    key_path, key, _ = keyed(tmp_path)
    data = export([{"id": "S001", "style": 3}], [])
    change(data)
    path = write_export(tmp_path, "bad.json", data)
    with pytest.raises(InputError) as error:
        score([path], key_path)
    assert str(error.value).startswith(f"{path}: {problem.split(' not found')[0]}")
    assert "\n" not in str(error.value)


def test_broken_json_export(tmp_path):
    key_path, _, _ = keyed(tmp_path)
    path = tmp_path / "broken.json"
    path.write_text('{"format": ')
    with pytest.raises(InputError, match=r"broken.json: not a review export \(Expecting value"):
        score([path], key_path)


def test_score_command_reads_several_files(tmp_path):
    key_path, _, ids = keyed(tmp_path)
    first = write_export(tmp_path, "a.json", export([{"id": i, "style": 5} for i in ids["finetuned"]], []))
    second = write_export(tmp_path, "b.json", export([{"id": i, "style": 1} for i in ids["finetuned"]], []))
    result = run_script("evaluate.py", "score", first, second, "--key", str(key_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    review = json.loads((tmp_path / "metrics" / "review.json").read_text())
    assert review["models"]["finetuned"]["style"] == 3.0 and review["files"] == [first, second]
    assert "finetuned" in result.stdout


def test_sheet_from_before_a_rerun_is_refused(tmp_path):
    sheet_path, key_path, sheet, _ = write_pair(tmp_path, {m: ("3", "3", "3") for m in MODELS})
    sheet[2]["prompt"] = "OTHELLO:\n"
    sheet_path.write_text(to_csv(sheet, SHEET_COLUMNS))
    with pytest.raises(InputError, match=r"row S003: prompt differs from .*key.csv \(a sheet from before a rerun\?\)"):
        score_sheet(sheet_path, key_path)


def test_criteria_from_params_reach_the_page_the_sheet_and_the_scores(tmp_path):
    criteria = EvaluateParams(review_criteria=["screenplay: Does it read like a screenplay?"]).criteria()
    sheet, key = build_review(SAMPLES, seed=3, criteria=criteria)
    write_review(tmp_path / "review", sheet, build_pairs(key, seed=3), criteria)
    assert "Does it read like a screenplay?" in (tmp_path / "review" / "index.html").read_text()
    header = (tmp_path / "review" / "sheet.csv").read_text().split("\n")[0]
    assert header == "id,prompt,text,screenplay,notes"
    key_path, _, ids = keyed(tmp_path)
    data = export([{"id": i, "screenplay": 4} for i in ids["base"]], [], criteria=["screenplay"])
    scores = score([write_export(tmp_path, "a.json", data)], key_path)
    assert scores["criteria"] == ["screenplay"] and scores["models"]["base"] == {"rated": 4, "screenplay": 4.0}


@pytest.mark.parametrize("entry", ["Style: capitalised", "style", "style:", "two words: x"])
def test_bad_review_criterion_is_a_param_error(entry):
    with pytest.raises(ParamError, match=r"evaluate.review_criteria\[0\]: expected 'name: question'"):
        EvaluateParams(review_criteria=[entry]).validate()
