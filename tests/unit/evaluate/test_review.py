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

from transferlm.core.errors import InputError, ParamError
from transferlm.core.params import EvaluateParams
from transferlm.evaluate.review import (
    EXPORT_FORMAT,
    FIXED_COLUMNS,
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
from transferlm.evaluate.review_stats import bradley_terry, mean_interval

REPO = Path(__file__).resolve().parents[3]
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
    with pytest.raises(InputError, match="row S999: id 'S999' not found"):
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


def export(ratings: list[dict], pairs: list[dict], criteria=("coherence", "relevance", "style"), reviewer="r",
           exported="2024-05-01T10:00:00.000Z") -> dict:  # fmt: skip
    token = sheet_token(build_review(SAMPLES, seed=3)[0])
    return {"format": EXPORT_FORMAT, "sheet": token, "reviewer": reviewer, "exported": exported,
            "criteria": list(criteria), "ratings": ratings, "pairs": pairs}  # fmt: skip


def keyed(tmp_path, criteria=None):
    sheet, key = build_review(SAMPLES, seed=3, **({"criteria": criteria} if criteria else {}))
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
    first = write_export(tmp_path, "a.json", export([{"id": i, "style": 2} for i in ids["base"]], [], reviewer="a"))
    second = write_export(tmp_path, "b.json", export([{"id": i, "style": 4} for i in ids["base"]], [], reviewer="b"))
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
    ratings = {name: [{"id": i, "style": style} for i in ids["finetuned"]] for name, style in (("a", 5), ("b", 1))}
    first = write_export(tmp_path, "a.json", export(ratings["a"], [], reviewer="a"))
    second = write_export(tmp_path, "b.json", export(ratings["b"], [], reviewer="b"))
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
    assert header == "id,prompt,text,screenplay,notes,sheet,hash"
    key_path, _, ids = keyed(tmp_path, criteria)
    data = export([{"id": i, "screenplay": 4} for i in ids["base"]], [], criteria=["screenplay"])
    scores = score([write_export(tmp_path, "a.json", data)], key_path)
    assert scores["criteria"] == ["screenplay"] and scores["models"]["base"] == {"rated": 4, "screenplay": 4.0}


@pytest.mark.parametrize("entry", ["Style: capitalised", "style", "style:", "two words: x"])
def test_bad_review_criterion_is_a_param_error(entry):
    with pytest.raises(ParamError, match=r"evaluate.review_criteria\[0\]: expected 'name: question'"):
        EvaluateParams(review_criteria=[entry]).validate()



# --- hostile input to `score` (issue #25): one line on stderr, exit 1, nothing printed, written or lost --


def score_command(tmp_path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`python stages/evaluate.py ARGS` in this process (cwd tmp_path): (exit status, stdout, stderr)."""
    import importlib.util

    from transferlm.core.cli import run_stage

    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO / "stages" / "evaluate.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", *args])
    try:
        run_stage(stage.app)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def pair_of(left: tuple, right: tuple, pair_id: str = "P001"):
    """An export change adding a comparison of the samples (model, prompt, sample) `left` and `right`."""

    def change(data, ids):
        data["pairs"].append({"id": pair_id, "left": ids[left], "right": ids[right], "choice": "left"})
        return f"pairs[0] ({pair_id}): {ids[left]} and {ids[right]} are not a pair on the page (other prompts or seeds)"

    return change


def in_export(change, message=None):
    """A case: an export of one rating, changed by `change` (which may return the message itself)."""

    def make(tmp_path, key):
        data = export([{"id": "S001", "style": 3}], [])
        ids = {(row["model"], row["prompt"], str(row["sample"])): row["id"] for row in key}
        found = change(data, ids)
        return in_json(json.dumps(data), found or message)(tmp_path, key)

    return make


def in_json(text: str, message: str):
    def make(tmp_path, key):
        path = tmp_path / "bad.json"
        path.write_text(text)
        return [path], f"{path}: {message}"

    return make


def in_sheet(change, message: str, encoding: str = "utf-8"):
    """A case: a sheet.csv with a style rating on every row, changed by change(rows, columns)."""

    def make(tmp_path, key):
        sheet, _ = build_review(SAMPLES, seed=3)
        for row in sheet:
            row["style"] = "3"
        columns = list(SHEET_COLUMNS)
        change(sheet, columns)
        path = tmp_path / "ada.csv"
        text = to_csv([{c: row.get(c, "") for c in columns} for row in sheet], tuple(columns))
        path.write_bytes(text.encode(encoding))
        return [path], f"{path}: {message}"

    return make


def set_row(n: int, **cells):
    return lambda sheet, columns: sheet[n].update(cells)


def resort_texts(sheet, columns):  # the text column alone sorted in a spreadsheet: rows get others' texts
    for row, text in zip(sheet, sorted(row["text"] for row in sheet), strict=True):
        row["text"] = text


DIGITS = "9" * 400
HOSTILE = {
    "pair of two prompts": in_export(pair_of(("base", "HAMLET:\n", "0"), ("finetuned", "ROMEO:\n", "0"))),
    "pair of two seeds": in_export(pair_of(("base", "HAMLET:\n", "0"), ("finetuned", "HAMLET:\n", "1"))),
    "pair of ids not on the page": in_export(
        lambda d, ids: d["pairs"].append({"id": "P1", "left": "S999", "right": "S001", "choice": "left"}),
        "pairs[0] (P1): id 'S999' not found in {key}",
    ),
    '"sheet": [1]': in_export(
        lambda d, ids: d.update(sheet=[1]), "rates other samples than {key} keys (exported before a rerun?)"
    ),
    "400-digit rating": in_export(
        lambda d, ids: d["ratings"].append({"id": "S002", "style": int(DIGITS)}),
        f"ratings[1] (S002): style rating {DIGITS[:37]}... is not a whole number from 1 to 5",
    ),
    "5000-digit number": in_json(
        '{"format": ' + "1" * 5000 + "}", "not a review export (a number with thousands of digits)"
    ),
    "100k-deep nesting": in_json("[" * 100_000 + "]" * 100_000, "not a review export (nested too deeply)"),
    "17 MiB file": in_json(" " * (17 * 2**20), "17.0 MiB, more than a review file can be (16 MiB at most)"),
    "unknown criterion in an export": in_export(
        lambda d, ids: d.update(criteria=["style", "Style "]),
        "criterion 'Style ' is not a criterion of {key} (coherence, relevance, style)",
    ),
    "__proto__ criterion in an export": in_export(
        lambda d, ids: d.update(criteria=["__proto__"]),
        "criterion '__proto__' is not a criterion of {key} (coherence, relevance, style)",
    ),
    "export without a reviewer": in_export(
        lambda d, ids: d.update(reviewer=" "),
        'no reviewer name (ratings count once per reviewer); add "reviewer": "<name>" to the file',
    ),
    "export without a date": in_export(
        lambda d, ids: d.pop("exported") and None,
        "'exported' must be the date and time of the export (ISO 8601, as the page writes it), got None",
    ),
    "sheet row of another page": in_sheet(
        set_row(2, sheet="0123456789abcdef"),
        "row S003: from another review page than {key} (a sheet from before a rerun?)",
    ),
    "sheet row with another text": in_sheet(
        set_row(2, text="Line 99"),
        "row S003: text differs from the sample {key} keys under this id (edited or re-sorted?)",
    ),
    "sheet with its text column re-sorted": in_sheet(
        resort_texts, "row S001: text differs from the sample {key} keys under this id (edited or re-sorted?)"
    ),
    "sheet from before tokens and hashes": in_sheet(
        lambda sheet, columns: (columns.remove("sheet"), columns.remove("hash")), "missing column(s) sheet, hash"
    ),
    "unknown column in a sheet": in_sheet(
        lambda sheet, columns: columns.insert(-2, "comments"),
        "column 'comments' is not a criterion of {key} (coherence, relevance, style)",
    ),
    "cp1252 sheet": in_sheet(
        set_row(0, notes="tr\u00e8s bien"),
        "not UTF-8 (byte 0xe8 at offset {offset}); re-save it as UTF-8 (in a spreadsheet: CSV UTF-8)",
        encoding="cp1252",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_review_file_is_one_line_and_changes_nothing(tmp_path, monkeypatch, capsys, case):
    key_path, key, _ = keyed(tmp_path)
    files, message = HOSTILE[case](tmp_path, key)
    message = message.replace("{key}", str(key_path))
    if "{offset}" in message:
        message = message.replace("{offset}", str(files[0].read_bytes().index(b"\xe8")))
    earlier = tmp_path / "metrics" / "review.json"  # an earlier score must survive a refused one
    earlier.parent.mkdir()
    earlier.write_text('{"models": {}}\n')
    before = {path: path.read_bytes() for path in [*files, key_path]}
    code, out, err = score_command(tmp_path, monkeypatch, capsys, "score", *map(str, files), "--key", str(key_path))
    assert (code, out, err) == (1, "", f"error: {message}\n")
    assert earlier.read_text() == '{"models": {}}\n' and list(earlier.parent.iterdir()) == [earlier]
    assert {path: path.read_bytes() for path in before} == before


def test_each_rating_counts_once_the_newest(tmp_path):
    key_path, key, ids = keyed(tmp_path)
    base = ids["base"][0]
    # One export rating the same sample twice (the later entry wins), passed twice; the same reviewer's
    # earlier, cumulative export, passed last, loses to the newer one whatever the order on the command line.
    newer = export([{"id": base, "style": 1}, {"id": base, "style": 5, "coherence": 2}], [], reviewer="ada",
                   exported="2024-05-02T09:00:00Z")  # fmt: skip
    older = export([{"id": base, "style": 3, "coherence": 4, "relevance": 4}], [], reviewer="ada",
                   exported="2024-05-01T09:00:00Z")  # fmt: skip
    files = [write_export(tmp_path, "ada-2.json", newer), write_export(tmp_path, "ada-1.json", older)]
    # A sheet with the same row twice, passed twice: one reviewer (ben, from the file name), one rating.
    sheet, _ = build_review(SAMPLES, seed=3)
    row = next(r for r in sheet if r["id"] == base) | {"style": "2"}
    (tmp_path / "ben.csv").write_text(to_csv([row, row], SHEET_COLUMNS))
    scores = score([*files, *files, tmp_path / "ben.csv", tmp_path / "ben.csv"], key_path)
    # ada: style 5, coherence 2 (newest), relevance 4 (only the older export has one); ben: style 2.
    assert scores["models"] == {"base": {"rated": 2, "coherence": 2.0, "relevance": 4.0, "style": 3.5}}
    assert scores["rated"] == 2 and scores["skipped_blank"] == 0


def test_each_comparison_counts_once_the_newest(tmp_path):
    key_path, key, _ = keyed(tmp_path)
    pair = build_pairs(key, seed=3)[0]
    newer = {"id": pair["id"], "left": pair["left"], "right": pair["right"], "choice": "left"}
    copy = newer | {"id": "P999", "choice": "right"}  # the same two samples under a made-up pair id, earlier
    scores = score([write_export(tmp_path, "a.json", export([], [copy, newer]))], key_path)
    assert scores["pairwise"]["comparisons"] == 1
    winner = next(row["model"] for row in key if row["id"] == pair["left"])
    assert scores["pairwise"]["models"][winner]["win_rate"] == 1.0


def test_a_large_export_of_duplicated_ratings_stays_small(tmp_path):
    key_path, _, ids = keyed(tmp_path)
    entries = [{"id": i, "style": 1 + n % 5, "note": "x" * 120} for n in range(10_000) for i in ids["base"]]
    path = write_export(tmp_path, "big.json", export(entries, []))
    assert os.path.getsize(path) > 6_000_000  # like the 6.4 MB export that once took 3 GB in the bootstrap
    scores = score([path], key_path)
    assert scores["models"]["base"]["rated"] == 4 and scores["models"]["base"]["style"] == 5.0


def test_bootstrap_memory_does_not_grow_with_the_ratings():
    many = mean_interval([1, 5] * 500_000)  # a million ratings: resampled as counts of each value
    assert many["n"] == 1_000_000 and many["ci"][0] < 3.0 < many["ci"][1] and many["ci"][1] - many["ci"][0] < 0.02


def test_a_sheet_saved_with_a_byte_order_mark_scores(tmp_path):
    sheet_path, key_path, _, _ = write_pair(tmp_path, {m: ("3", "3", "3") for m in MODELS})
    sheet_path.write_bytes(b"\xef\xbb\xbf" + sheet_path.read_bytes())
    assert score_sheet(sheet_path, key_path)["rated"] == 12


@pytest.mark.parametrize("saved", ["as written", "apostrophe dropped"])
def test_formula_text_is_inert_in_the_sheet_and_still_scores(tmp_path, saved):
    texts = ["=HYPERLINK(\"http://x\")", "+1", "-LEAR", "@SUM(A1)", "\tx", "'quoted"]
    samples = [s | {"text": texts[n % len(texts)] + str(n)} for n, s in enumerate(SAMPLES)]
    sheet, key = build_review(samples, seed=3)
    write_review(tmp_path / "review", sheet)
    with open(tmp_path / "review" / "sheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(not row["text"].startswith(("=", "+", "-", "@", "\t")) for row in rows)
    assert sum(row["text"].startswith("'") for row in rows) == 12  # 10 neutralised, 2 quoted to begin with
    for row in rows:
        row["style"] = "4"
        if saved == "apostrophe dropped":  # what a spreadsheet writes back for a cell it showed as text
            row["text"] = row["text"].removeprefix("'")
    (tmp_path / "ada.csv").write_text(to_csv(rows, SHEET_COLUMNS))
    (tmp_path / "key.csv").write_text(to_csv(key, KEY_COLUMNS))
    assert score_sheet(tmp_path / "ada.csv", tmp_path / "key.csv")["rated"] == 12


@pytest.mark.parametrize("name", EvaluateParams.RESERVED_CRITERIA)
def test_reserved_criterion_name_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, name):
    with pytest.raises(ParamError) as error:
        EvaluateParams(review_criteria=[f"{name}: a question"]).validate()
    message = f"evaluate.review_criteria[0]: {name!r} is a name the review uses for something else; choose another"
    assert str(error.value) == message
    (tmp_path / "params.yaml").write_text(f'evaluate:\n  review_criteria: ["{name}: a question"]\n')
    code, out, err = score_command(tmp_path, monkeypatch, capsys, "run")
    assert (code, out, err) == (1, "", f"error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_every_fixed_sheet_column_is_a_reserved_criterion_name():
    assert set(FIXED_COLUMNS) <= set(EvaluateParams.RESERVED_CRITERIA)


# ------------------------------------------------------------------- the real text as a blind sample


def test_the_reference_sample_looks_like_any_model_sample_on_the_page(tmp_path):
    from transferlm.evaluate.review_stats import REFERENCE

    reference = [{"model": REFERENCE, "prompt": p, "sample": 0, "seed": None, "text": f"The real line after {p}",
                  "new_tokens": 5} for p in ("HAMLET:\n", "ROMEO:\n")]
    sheet, key = build_review(SAMPLES + reference, seed=3)
    write_review(tmp_path / "review", sheet, build_pairs(key, seed=3))
    assert {tuple(row) for row in sheet} == {tuple(sheet[0])}  # the same columns for every sample
    page = (tmp_path / "review" / "index.html").read_text()
    assert REFERENCE not in page.lower() and "The real line after" in page  # shown, never named
    ids = {row["id"] for row in key if row["model"] == REFERENCE}
    assert len(ids) == 2 and all(i.startswith("S") for i in ids)
    # The reference is paired with each model's sample 0 of its prompt, like any other model.
    pairs = build_pairs(key, seed=3)
    model_of = {row["id"]: row["model"] for row in key}
    with_reference = [p for p in pairs if REFERENCE in (model_of[p["left"]], model_of[p["right"]])]
    assert len(with_reference) == 2 * len(MODELS)


def test_a_reference_that_always_wins_has_a_win_rate_of_one_and_fools_nobody():
    from transferlm.evaluate.review_stats import REFERENCE, pairwise

    comparisons = [(REFERENCE, model, 1.0) for model in MODELS for _ in range(20)]
    comparisons += [(model, REFERENCE, 0.0) for model in MODELS for _ in range(5)]  # either side
    result = pairwise(comparisons, [*MODELS, REFERENCE])
    assert result["models"][REFERENCE]["win_rate"] == 1.0
    assert result["models"][REFERENCE]["win_rate_ci"] == [1.0, 1.0]
    for model in MODELS:
        fooled = result["against_reference"][model]
        assert fooled["fooled_rate"] == 0.0 and fooled["fooled_rate_ci"] == [0.0, 0.0]
        assert fooled["comparisons"] == 25


def test_fooled_rate_counts_a_tie_as_half_with_an_interval():
    from transferlm.evaluate.review_stats import REFERENCE, pairwise

    comparisons = [("finetuned", REFERENCE, 1.0)] * 10 + [("finetuned", REFERENCE, 0.5)] * 10 + \
                  [(REFERENCE, "finetuned", 1.0)] * 20
    fooled = pairwise(comparisons, ["finetuned", REFERENCE])["against_reference"]["finetuned"]
    assert fooled["fooled_rate"] == pytest.approx(15 / 40)
    low, high = fooled["fooled_rate_ci"]
    assert low < 15 / 40 < high
