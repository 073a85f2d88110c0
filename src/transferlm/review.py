"""A blind manual review of the samples: a rating sheet without model names, a separate key, and scoring.

The sheet lists every sample in a seeded random order under an opaque id (S001, ...). The key that maps
ids back to models lives outside reports/ (data/review_key.csv), so a reviewer who opens the sheet or
the HTML page cannot tell which model wrote what. After rating, `score_sheet` joins sheet and key and
reports the mean rating per model and criterion.
"""

from __future__ import annotations

import csv
import html
import io
import random
from pathlib import Path

from transferlm.errors import InputError
from transferlm.generate import MODELS

CRITERIA = {
    "coherence": "Does the text hang together: grammatical, sentences that follow from each other?",
    "relevance": "Does it continue the prompt: the named speaker, the scene, the line begun?",
    "style": "Does it read like Shakespeare's plays: verse, diction, the NAME: script layout?",
}
SCALE = "1 = not at all, 2 = barely, 3 = partly, 4 = mostly, 5 = fully"
SHEET_COLUMNS = ("id", "prompt", "text", *CRITERIA, "notes")
KEY_COLUMNS = ("id", "model", "prompt", "sample")


def build_review(samples: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(sheet rows, key rows): all samples shuffled with `seed` and given ids S001, S002, ..."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    width = max(3, len(str(len(order))))
    sheet, key = [], []
    for number, sample in enumerate(order, start=1):
        sample_id = f"S{number:0{width}d}"
        blanks = {column: "" for column in (*CRITERIA, "notes")}
        sheet.append({"id": sample_id, "prompt": sample["prompt"], "text": sample["text"]} | blanks)
        key.append(
            {"id": sample_id, "model": sample["model"], "prompt": sample["prompt"], "sample": sample["sample"]}
        )
    return sheet, key


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _instructions() -> list[str]:
    return [
        "Rate each sample from 1 to 5 on each criterion: " + SCALE + ".",
        *(f"{name}: {question}" for name, question in CRITERIA.items()),
        "Judge the text on its own; the models behind the ids are hidden on purpose. Leave a row's ratings "
        "blank to skip it. Write the ratings into the matching columns of sheet.csv (any spreadsheet or "
        "text editor), then run: python stages/evaluate.py score reports/review/sheet.csv",
    ]


def readme() -> str:
    lines = ["# Blind review sheet", "", "sheet.csv: one sample per row; sheet.html: the same samples to read.", ""]
    lines += [f"- {line}" for line in _instructions()]
    lines += ["", "Do not open data/review_key.csv (which model wrote which id) before you have finished.", ""]
    return "\n".join(lines)


def render_html(sheet: list[dict]) -> str:
    """A static page showing the sheet; every piece of sample text is HTML-escaped."""
    esc = html.escape
    items = "\n".join(f"<li>{esc(line)}</li>" for line in _instructions())
    rows = "\n".join(
        f"<tr><td>{esc(row['id'])}</td><td><pre>{esc(row['prompt'])}</pre></td>"
        f"<td><pre>{esc(row['text'])}</pre></td>"
        + "".join("<td></td>" for _ in CRITERIA)
        + "</tr>"
        for row in sheet
    )
    headers = "".join(f"<th>{esc(name)}</th>" for name in ("id", "prompt", "text", *CRITERIA))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Blind review sheet</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #999; padding: 0.4em; vertical-align: top; }}
td:nth-child(n+4) {{ min-width: 6em; }}
pre {{ white-space: pre-wrap; margin: 0; font-family: serif; max-width: 40em; }}
</style>
</head>
<body>
<h1>Blind review sheet</h1>
<ul>
{items}
</ul>
<table>
<tr>{headers}</tr>
{rows}
</table>
</body>
</html>
"""


def write_review(folder: Path, sheet: list[dict]) -> None:
    """sheet.csv, sheet.html and README.md into `folder` (created here)."""
    folder.mkdir(parents=True)
    (folder / "sheet.csv").write_text(to_csv(sheet, SHEET_COLUMNS), encoding="utf-8")
    (folder / "sheet.html").write_text(render_html(sheet), encoding="utf-8")
    (folder / "README.md").write_text(readme(), encoding="utf-8")


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _rating(value: str | None, path: Path, row_id: str, criterion: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number.is_integer() and 1 <= number <= 5):
        raise InputError(f"{path}: row {row_id}: {criterion} rating {value!r} is not a whole number from 1 to 5")
    return int(number)


def score_sheet(sheet_path: str | Path, key_path: str | Path) -> dict:
    """Mean rating per model and criterion from a filled sheet; rows with no rating are skipped and counted."""
    sheet_path, key_path = Path(sheet_path), Path(key_path)
    key = {row["id"]: row for row in _read_csv(key_path, KEY_COLUMNS)}
    ratings: dict[str, dict[str, list[int]]] = {}  # model -> criterion -> ratings given
    rated: dict[str, int] = {}  # model -> rows with at least one rating
    skipped = 0
    for row in _read_csv(sheet_path, SHEET_COLUMNS):
        row_id = row["id"]
        if row_id not in key:
            raise InputError(f"{sheet_path}: row {row_id}: id not found in {key_path}")
        values = {criterion: _rating(row[criterion], sheet_path, row_id, criterion) for criterion in CRITERIA}
        if all(value is None for value in values.values()):
            skipped += 1
            continue
        model = key[row_id]["model"]
        rated[model] = rated.get(model, 0) + 1
        given = ratings.setdefault(model, {criterion: [] for criterion in CRITERIA})
        for criterion, value in values.items():
            if value is not None:
                given[criterion].append(value)
    order = [name for name in MODELS if name in rated] + sorted(set(rated) - set(MODELS))
    models = {
        name: {"rated": rated[name]} | {c: sum(v) / len(v) if v else None for c, v in ratings[name].items()}
        for name in order
    }
    return {
        "scale": "1-5",
        "criteria": list(CRITERIA),
        "rated": sum(rated.values()),
        "skipped_blank": skipped,
        "models": models,
    }


def format_scores(scores: dict) -> str:
    """The per-model means as a plain-text table."""
    header = f"{'model':<10} {'rated':>5} " + " ".join(f"{c:>9}" for c in CRITERIA)
    lines = [header, "-" * len(header)]
    for model, entry in scores["models"].items():
        cells = " ".join(f"{'-' if entry[c] is None else format(entry[c], '.2f'):>9}" for c in CRITERIA)
        lines.append(f"{model:<10} {entry['rated']:>5} {cells}")
    lines.append(f"{scores['rated']} rated row(s), {scores['skipped_blank']} blank row(s) skipped")
    return "\n".join(lines)
