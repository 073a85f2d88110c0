"""A blind manual review of the samples: a review page and sheet without model names, a key, and scoring.

Every sample gets an opaque id (S001, ...) in a seeded random order, and pairs of samples written for the
same prompt and seed by different models get pair ids (P001, ...). Which model wrote which id lives only
in the key, outside reports/ (data/review_key.csv), so the reviewer stays blind. The reviewer rates on
reports/review/index.html (ratings kept in the browser, exported to a JSON file the reviewer saves under
reviews/, where no pipeline run touches it) or fills sheet.csv; `score` joins one or more of those files
with the key and reports per-model means, pairwise win rates and a Bradley-Terry ranking.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import random
from pathlib import Path

from transferlm.errors import InputError
from transferlm.paths import MODELS
from transferlm.review_page import instructions, readme, render_html, render_page
from transferlm.review_stats import CONFIDENCE, RESAMPLES, mean_interval, pairwise

CRITERIA = {
    "coherence": "Does the text hang together: grammatical, sentences that follow from each other?",
    "relevance": "Does it continue the prompt: the named speaker, the scene, the line begun?",
    "style": "Does it read like Shakespeare's plays: verse, diction, the NAME: script layout?",
}
SHEET_COLUMNS = ("id", "prompt", "text", *CRITERIA, "notes")
KEY_COLUMNS = ("id", "model", "prompt", "sample", "sheet")
EXPORT_FORMAT = "transferlm-review/1"
CHOICES = {"left": 1.0, "tie": 0.5, "right": 0.0}  # points of the left sample


def build_review(samples: list[dict], seed: int, criteria: dict[str, str] = CRITERIA) -> tuple[list[dict], list[dict]]:
    """(sheet rows, key rows): all samples shuffled with `seed` and given ids S001, S002, ..."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    width = max(3, len(str(len(order))))
    sheet, key = [], []
    for number, sample in enumerate(order, start=1):
        sample_id = f"S{number:0{width}d}"
        blanks = {column: "" for column in (*criteria, "notes")}
        sheet.append({"id": sample_id, "prompt": sample["prompt"], "text": sample["text"]} | blanks)
        key.append({"id": sample_id, "model": sample["model"], "prompt": sample["prompt"], "sample": sample["sample"]})
    token = sheet_token(sheet)
    return sheet, [row | {"sheet": token} for row in key]


def build_pairs(key: list[dict], seed: int) -> list[dict]:
    """Every two samples of different models for the same prompt and sample number (hence seed).

    Grouping uses only the prompt and sample number, which the page shows anyway; sides and order are
    shuffled, so neither the side nor the position of a pair tells which model is which.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in key:
        groups.setdefault((row["prompt"], str(row["sample"])), []).append(row)
    rng = random.Random(seed)
    pairs = []
    for rows in groups.values():
        for first, second in itertools.combinations(rows, 2):
            if first["model"] != second["model"]:
                pairs.append([first["id"], second["id"]] if rng.random() < 0.5 else [second["id"], first["id"]])
    rng.shuffle(pairs)
    width = max(3, len(str(len(pairs))))
    return [{"id": f"P{n:0{width}d}", "left": left, "right": right} for n, (left, right) in enumerate(pairs, 1)]


def to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def sheet_token(sheet: list[dict]) -> str:
    """Names this set of samples, so the browser keeps ratings of different runs apart; reveals no model."""
    digest = hashlib.sha256(json.dumps([[r["id"], r["prompt"], r["text"]] for r in sheet]).encode("utf-8"))
    return digest.hexdigest()[:16]


def write_review(folder: Path, sheet: list[dict], pairs: list[dict] = (), criteria: dict[str, str] = CRITERIA) -> None:
    """index.html, sheet.csv, sheet.html and README.md into `folder` (created here)."""
    folder.mkdir(parents=True)
    payload = {
        "format": EXPORT_FORMAT,
        "sheet": sheet_token(sheet),
        "criteria": criteria,
        "instructions": instructions(criteria),
        "samples": [{"id": r["id"], "prompt": r["prompt"], "text": r["text"]} for r in sheet],
        "pairs": list(pairs),
    }
    (folder / "index.html").write_text(render_page(payload), encoding="utf-8")
    (folder / "sheet.csv").write_text(to_csv(sheet, ("id", "prompt", "text", *criteria, "notes")), encoding="utf-8")
    (folder / "sheet.html").write_text(render_html(sheet, criteria), encoding="utf-8")
    (folder / "README.md").write_text(readme(criteria), encoding="utf-8")


# --- reading ratings ------------------------------------------------------------------------------


def _read_csv(path: Path, columns: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        missing = [column for column in columns if column not in fields]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
        return fields, list(reader)


def _rating(value: object, path: Path, where: str, criterion: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (number.is_integer() and 1 <= number <= 5):
        raise InputError(f"{path}: {where}: {criterion} rating {value!r} is not a whole number from 1 to 5")
    return int(number)


class _Ratings:
    """Ratings and comparisons gathered from every file, already mapped to models through the key."""

    def __init__(self, key: dict[str, dict], key_path: Path):
        self.key, self.key_path = key, key_path
        self.criteria: list[str] = []
        self.given: dict[str, dict[str, list[int]]] = {}  # model -> criterion -> ratings
        self.rated: dict[str, int] = {}  # model -> samples with at least one rating
        self.skipped = 0
        self.comparisons: list[tuple[str, str, float]] = []

    def model(self, sample_id: object, path: Path, where: str) -> str:
        if not isinstance(sample_id, str) or sample_id not in self.key:
            raise InputError(f"{path}: {where}: id {sample_id!r} not found in {self.key_path}")
        return self.key[sample_id]["model"]

    def add_rating(self, path: Path, where: str, sample_id: object, values: dict[str, int | None]) -> None:
        model = self.model(sample_id, path, where)
        if all(value is None for value in values.values()):
            self.skipped += 1
            return
        self.rated[model] = self.rated.get(model, 0) + 1
        for criterion, value in values.items():
            if criterion not in self.criteria:
                self.criteria.append(criterion)
            if value is not None:
                self.given.setdefault(model, {}).setdefault(criterion, []).append(value)

    def read_csv(self, path: Path) -> None:
        fields, rows = _read_csv(path, ("id", "notes"))
        criteria = [f for f in fields if f not in ("id", "prompt", "text", "notes")]
        for row in rows:
            where = f"row {row['id']}"
            if row["id"] not in self.key:
                raise InputError(f"{path}: {where}: id not found in {self.key_path}")
            if "prompt" in row and row["prompt"] != self.key[row["id"]]["prompt"]:
                raise InputError(f"{path}: {where}: prompt differs from {self.key_path} (a sheet from before a rerun?)")
            self.add_rating(path, where, row["id"], {c: _rating(row[c], path, where, c) for c in criteria})

    def read_export(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: not a review export ({error})") from None
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InputError(f'{path}: not a review export (no "format": "{EXPORT_FORMAT}")')
        # Ids are reused by every run; rated samples of an older run would silently count for new ones.
        sheets = {row.get("sheet") for row in self.key.values()} - {None, ""}
        if sheets and data.get("sheet") not in sheets:
            raise InputError(f"{path}: rates other samples than {self.key_path} keys (exported before a rerun?)")
        criteria = data.get("criteria")
        if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
            raise InputError(f"{path}: 'criteria' must be a list of names")
        for n, entry in enumerate(_entries(data, "ratings", path)):
            where = f"ratings[{n}] ({entry.get('id')})"
            values = {c: _rating(entry.get(c), path, where, c) for c in criteria}
            self.add_rating(path, where, entry.get("id"), values)
        for n, entry in enumerate(_entries(data, "pairs", path)):
            where = f"pairs[{n}] ({entry.get('id')})"
            left, right = (self.model(entry.get(side), path, where) for side in ("left", "right"))
            if entry.get("choice") not in CHOICES:
                raise InputError(f"{path}: {where}: choice {entry.get('choice')!r} is not one of left, tie, right")
            if left == right:
                raise InputError(f"{path}: {where}: both sides are the same model's sample")
            self.comparisons.append((left, right, CHOICES[entry["choice"]]))


def _entries(data: dict, name: str, path: Path) -> list[dict]:
    entries = data.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{path}: '{name}' must be a list of objects")
    return entries


def score(files: list[str | Path], key_path: str | Path) -> dict:
    """Per-model means with bootstrap intervals, win rates and a Bradley-Terry ranking, over all files.

    A .json file is a review page export; anything else is read as a filled sheet.csv.
    """
    key_path = Path(key_path)
    _, key_rows = _read_csv(key_path, KEY_COLUMNS[:4])
    ratings = _Ratings({row["id"]: row for row in key_rows}, key_path)
    for file in map(Path, files):
        if not file.is_file():
            raise InputError(f"{file}: file not found")
        ratings.read_export(file) if file.suffix.lower() == ".json" else ratings.read_csv(file)
    order = [m for m in MODELS if m in ratings.rated] + sorted(set(ratings.rated) - set(MODELS))
    models, intervals = {}, {}
    for name in order:
        given = ratings.given.get(name, {})
        stats = {c: mean_interval(given[c]) for c in ratings.criteria if given.get(c)}
        models[name] = {"rated": ratings.rated[name]} | {
            c: stats[c]["mean"] if c in stats else None for c in ratings.criteria
        }
        intervals[name] = {c: stats[c]["ci"] for c in stats}
    seen = {m for c in ratings.comparisons for m in c[:2]}
    compared = [m for m in MODELS if m in seen] + sorted(seen - set(MODELS))
    return {
        "scale": "1-5",
        "criteria": ratings.criteria,
        "files": [str(f) for f in files],
        "rated": sum(ratings.rated.values()),
        "skipped_blank": ratings.skipped,
        "models": models,
        "intervals": intervals,
        "confidence": CONFIDENCE,
        "resamples": RESAMPLES,
        "pairwise": pairwise(ratings.comparisons, compared) if ratings.comparisons else None,
    }


def score_sheet(sheet_path: str | Path, key_path: str | Path) -> dict:
    """One filled sheet.csv; see `score`."""
    return score([sheet_path], key_path)


def format_scores(scores: dict) -> str:
    """Means with intervals, then the pairwise ranking, as plain text."""
    criteria = scores["criteria"]
    header = f"{'model':<10} {'rated':>5} " + " ".join(f"{c:>20}" for c in criteria)
    lines = [header, "-" * len(header)]
    for model, entry in scores["models"].items():
        cells = []
        for c in criteria:
            ci = scores["intervals"][model].get(c)
            cells.append(f"{'-' if entry[c] is None else f'{entry[c]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]':>20}")
        lines.append(f"{model:<10} {entry['rated']:>5} " + " ".join(cells))
    lines.append(
        f"{scores['rated']} rated sample(s), {scores['skipped_blank']} blank row(s) skipped; "
        f"[{scores['confidence']:.0%} bootstrap intervals]"
    )
    pair = scores["pairwise"]
    if pair:
        lines += [
            "",
            f"pairwise: {pair['comparisons']} comparison(s); Bradley-Terry log-strength, win rate (tie = half)",
        ]
        for name in pair["ranking"]:
            m = pair["models"][name]
            lines.append(
                f"{m['rank']}. {name:<10} strength {m['strength']:+.2f} [{m['strength_ci'][0]:+.2f}, "
                f"{m['strength_ci'][1]:+.2f}]  win rate {m['win_rate']:.0%} "
                f"[{m['win_rate_ci'][0]:.0%}, {m['win_rate_ci'][1]:.0%}]"
            )
    return "\n".join(lines)
