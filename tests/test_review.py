"""Blind review: the sheet hides the models, the key maps every id back, and a filled sheet scores right."""

from __future__ import annotations

import csv

import pytest
from test_generate import run_script

from transferlm.errors import InputError
from transferlm.review import KEY_COLUMNS, SHEET_COLUMNS, build_review, score_sheet, to_csv, write_review

MODELS = ("base", "finetuned", "scratch")
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
