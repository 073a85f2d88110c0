"""A blind manual review of the samples: a review page and sheet without model names, a key, and scoring.

Every sample gets an opaque id (S001, ...) in a seeded random order, and pairs of samples written for the
same prompt and seed by different models get pair ids (P001, ...). Which model wrote which id lives only
in the key, outside reports/ (data/review_key.csv), so the reviewer stays blind. The reviewer rates on
reports/review/index.html (ratings kept in the browser, exported to a JSON file the reviewer saves under
reviews/, where no pipeline run touches it) or fills sheet.csv; `score` joins one or more of those files
with the key and reports per-model means, pairwise win rates and a Bradley-Terry ranking.

The review's samples are drawn with other seeds than the labelled ones in reports/samples.{jsonl,md} and
the report (transferlm.evaluate.generate.review_settings), so no text on the page is printed anywhere with its model.
Each sheet row carries the page's token and a hash of its text, which `score` checks against the key; a
reviewer's ratings count once per sample and criterion, the newest one.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import random
from datetime import UTC, datetime
from pathlib import Path

from transferlm.core.errors import InputError
from transferlm.core.paths import MODELS
from transferlm.evaluate.review_page import instructions, readme, render_html, render_page
from transferlm.evaluate.review_stats import CONFIDENCE, RESAMPLES, mean_interval, pairwise

CRITERIA = {
    "coherence": "Does the text hang together: grammatical, sentences that follow from each other?",
    "relevance": "Does it continue the prompt: the named speaker, the scene, the line begun?",
    "style": "Does it read like Shakespeare's plays: verse, diction, the NAME: script layout?",
}
# The sheet's columns that are not criteria (params.EvaluateParams refuses them as criterion names).
FIXED_COLUMNS = ("id", "prompt", "text", "notes", "sheet", "hash")
KEY_COLUMNS = ("id", "model", "prompt", "sample", "sheet", "hash", "criteria")
EXPORT_FORMAT = "transferlm-review/1"
CHOICES = {"left": 1.0, "tie": 0.5, "right": 0.0}  # points of the left sample
# Far above any real sheet, export or key (a sheet of 3000 long samples is a few MB); keeps parsing bounded.
MAX_FILE_BYTES = 16 * 2**20
# A cell starting with one of these is a live formula in a spreadsheet (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def sheet_columns(criteria: dict[str, str] | tuple[str, ...]) -> tuple[str, ...]:
    return ("id", "prompt", "text", *criteria, "notes", "sheet", "hash")


SHEET_COLUMNS = sheet_columns(tuple(CRITERIA))


def build_review(samples: list[dict], seed: int, criteria: dict[str, str] = CRITERIA) -> tuple[list[dict], list[dict]]:
    """(sheet rows, key rows): all samples shuffled with `seed` and given ids S001, S002, ..."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    width = max(3, len(str(len(order))))
    sheet, key = [], []
    for number, sample in enumerate(order, start=1):
        sample_id = f"S{number:0{width}d}"
        sheet.append({"id": sample_id, "prompt": sample["prompt"], "text": sample["text"]})
        key.append({"id": sample_id, "model": sample["model"], "prompt": sample["prompt"], "sample": sample["sample"],
                    "hash": text_hash(sample["text"])})  # fmt: skip
    token = sheet_token(sheet)
    blanks = {column: "" for column in (*criteria, "notes")}
    sheet = [row | blanks | {"sheet": token, "hash": text_hash(row["text"])} for row in sheet]
    # The key names the criteria the page asks for, so `score` can refuse any other name.
    return sheet, [row | {"sheet": token, "criteria": " ".join(criteria)} for row in key]


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


def text_hash(text: str) -> str:
    """Ties a sheet row to its sample's text, so a stale or re-sorted row cannot be scored as another."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _inert(cell: object) -> object:
    """A cell a spreadsheet shows as text: a leading apostrophe before a formula's first character, and
    before an apostrophe (which a spreadsheet may take as its own text marker and drop)."""
    return "'" + cell if isinstance(cell, str) and cell.startswith((*FORMULA_STARTS, "'")) else cell


def _readings(cell: str | None) -> tuple[str, ...]:
    """What a sheet cell may have been written from: itself, or itself without _inert's apostrophe (which
    a spreadsheet keeps or drops on saving)."""
    cell = cell or ""
    return (cell, cell[1:]) if cell.startswith("'") else (cell,)


def sheet_token(sheet: list[dict]) -> str:
    """Names this set of samples, so the browser keeps ratings of different runs apart; reveals no model."""
    digest = hashlib.sha256(json.dumps([[r["id"], r["prompt"], r["text"]] for r in sheet]).encode("utf-8"))
    return digest.hexdigest()[:16]


def write_review(folder: Path, sheet: list[dict], pairs: list[dict] = (), criteria: dict[str, str] = CRITERIA,
                 note: str = "") -> None:
    """index.html, sheet.csv, sheet.html and README.md into `folder` (created here); `note` says which set of
    criteria the page asks and why."""
    folder.mkdir(parents=True)
    payload = {
        "format": EXPORT_FORMAT,
        "sheet": sheet_token(sheet),
        "criteria": criteria,
        "instructions": instructions(criteria, note),
        "samples": [{"id": r["id"], "prompt": r["prompt"], "text": r["text"]} for r in sheet],
        "pairs": list(pairs),
    }
    (folder / "index.html").write_text(render_page(payload), encoding="utf-8")
    inert = [{column: _inert(cell) for column, cell in row.items()} for row in sheet]
    (folder / "sheet.csv").write_text(to_csv(inert, sheet_columns(criteria)), encoding="utf-8")
    (folder / "sheet.html").write_text(render_html(sheet, criteria, note), encoding="utf-8")
    (folder / "README.md").write_text(readme(criteria, note), encoding="utf-8")


# --- reading ratings ------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """A value for a one-line message: repr (so no newline gets through), cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(value: object) -> str:
    return value if isinstance(value, str) and value.isprintable() and len(value) <= 40 else _shown(value)


def _read_text(path: Path) -> str:
    """The file's text; one line when it is missing, larger than any review file, or not UTF-8."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: {size / 2**20:.1f} MiB, more than a review file can be "
                         f"({MAX_FILE_BYTES // 2**20} MiB at most)")  # fmt: skip
    data = path.read_bytes()
    body = data.removeprefix(codecs.BOM_UTF8)  # a spreadsheet's "CSV UTF-8" starts with a byte order mark
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        # Refused, never guessed: cp1252 and Latin-1 read any bytes, so a wrong guess would pass silently.
        offset = error.start + len(data) - len(body)
        raise InputError(f"{path}: not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); "
                         "re-save it as UTF-8 (in a spreadsheet: CSV UTF-8)") from None  # fmt: skip


def _read_csv(path: Path, columns: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields, rows = list(reader.fieldnames or []), list(reader)
    except csv.Error as error:
        raise InputError(f"{path}: not a CSV file ({error})") from None
    missing = [column for column in columns if column not in fields]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return fields, rows


def _read_json(path: Path) -> object:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        reason = str(error)
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        reason = "a number with thousands of digits"
    except RecursionError:
        reason = "nested too deeply"
    raise InputError(f"{path}: not a review export ({reason})")


def _rating(value: object, path: Path, where: str, criterion: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    # Compared, never converted: a 400-digit integer is not a rating, and float() of it would overflow.
    if isinstance(value, bool) or not isinstance(number, int | float) or number not in (1, 2, 3, 4, 5):
        raise InputError(f"{path}: {where}: {criterion} rating {_shown(value)} is not a whole number from 1 to 5")
    return int(number)


def _stamp(value: object, path: Path) -> datetime:
    try:
        stamp = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'exported' must be the date and time of the export (ISO 8601, as the page "
                         f"writes it), got {_shown(value)}") from None  # fmt: skip
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _keep(store: dict, name: tuple, stamp: datetime, value: object) -> None:
    """A reviewer's newest rating of one thing; at equal times the one read last (the same file twice)."""
    if name not in store or store[name][0] <= stamp:
        store[name] = (stamp, value)


class _Ratings:
    """Every file's ratings and comparisons, checked against the key: the newest one per reviewer, page,
    sample (or pair of samples) and criterion, so re-exports, copies and repeated rows count once."""

    def __init__(self, key: dict[str, dict], key_path: Path):
        self.key, self.key_path = key, key_path
        self.sheets = {row["sheet"] for row in key.values()}
        self.known = list(dict.fromkeys(c for row in key.values() for c in (row["criteria"] or "").split()))
        self.listed: set[str] = set()  # criteria some file rates
        self.ratings: dict[tuple, tuple] = {}  # (reviewer, sheet, id, criterion) -> (stamp, rating)
        self.seen: set[tuple] = set()  # (reviewer, sheet, id) of every entry, rated or blank
        self.choices: dict[tuple, tuple] = {}  # (reviewer, sheet, {left, right}) -> (stamp, comparison)

    def sample(self, sample_id: object, path: Path, where: str) -> dict:
        if not isinstance(sample_id, str) or sample_id not in self.key:
            raise InputError(f"{path}: {where}: id {_shown(sample_id)} not found in {self.key_path}")
        return self.key[sample_id]

    def criteria(self, names: list[str], path: Path, what: str) -> list[str]:
        unknown = [name for name in names if name not in self.known]
        if unknown:
            raise InputError(f"{path}: {what} {_shown(unknown[0])} is not a criterion of {self.key_path} "
                             f"({', '.join(self.known)})")  # fmt: skip
        self.listed.update(names)
        return names

    def add_rating(self, reviewer: str, sheet: str, stamp: datetime, sample_id: str, values: dict) -> None:
        self.seen.add((reviewer, sheet, sample_id))
        for criterion, value in values.items():
            if value is not None:
                _keep(self.ratings, (reviewer, sheet, sample_id, criterion), stamp, value)

    def read_csv(self, path: Path) -> None:
        fields, rows = _read_csv(path, ("id", "text", "sheet", "hash"))
        criteria = self.criteria([f for f in fields if f not in FIXED_COLUMNS], path, "column")
        # A sheet has no name field: it holds the ratings of the reviewer it is named after (reviews/ada.csv).
        reviewer, stamp = path.stem, datetime.fromtimestamp(path.stat().st_mtime, UTC)
        for row in rows:
            if not any(isinstance(cell, str) and cell.strip() for cell in row.values()):
                continue  # an empty line a spreadsheet left
            where = f"row {_label(row['id'])}"
            sample = self.sample(row["id"], path, where)
            if row["sheet"] != sample["sheet"]:
                raise InputError(f"{path}: {where}: from another review page than {self.key_path} "
                                 "(a sheet from before a rerun?)")  # fmt: skip
            if row["hash"] != sample["hash"] or sample["hash"] not in map(text_hash, _readings(row["text"])):
                raise InputError(f"{path}: {where}: text differs from the sample {self.key_path} keys under this "
                                 "id (edited or re-sorted?)")  # fmt: skip
            if "prompt" in row and sample["prompt"] not in _readings(row["prompt"]):
                raise InputError(f"{path}: {where}: prompt differs from {self.key_path} (a sheet from before a rerun?)")
            values = {c: _rating(row[c], path, where, c) for c in criteria}
            self.add_rating(reviewer, row["sheet"], stamp, row["id"], values)

    def read_export(self, path: Path) -> None:
        data = _read_json(path)
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise InputError(f'{path}: not a review export (no "format": "{EXPORT_FORMAT}")')
        # Ids are reused by every run; rated samples of an older run would silently count for new ones.
        sheet = data.get("sheet")
        if not isinstance(sheet, str) or sheet not in self.sheets:
            raise InputError(f"{path}: rates other samples than {self.key_path} keys (exported before a rerun?)")
        reviewer = data.get("reviewer")
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise InputError(f'{path}: no reviewer name (ratings count once per reviewer); add "reviewer": '
                             '"<name>" to the file')  # fmt: skip
        reviewer, stamp = reviewer.strip(), _stamp(data.get("exported"), path)
        criteria = data.get("criteria")
        if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
            raise InputError(f"{path}: 'criteria' must be a list of names")
        self.criteria(criteria, path, "criterion")
        for n, entry in enumerate(_entries(data, "ratings", path)):
            where = f"ratings[{n}] ({_label(entry.get('id'))})"
            self.sample(entry.get("id"), path, where)
            values = {c: _rating(entry.get(c), path, where, c) for c in criteria}
            self.add_rating(reviewer, sheet, stamp, entry["id"], values)
        for n, entry in enumerate(_entries(data, "pairs", path)):
            where = f"pairs[{n}] ({_label(entry.get('id'))})"
            left, right = (self.sample(entry.get(side), path, where) for side in ("left", "right"))
            choice = entry.get("choice")
            if not isinstance(choice, str) or choice not in CHOICES:
                raise InputError(f"{path}: {where}: choice {_shown(choice)} is not one of left, tie, right")
            if (left["prompt"], left["sample"]) != (right["prompt"], right["sample"]):
                raise InputError(f"{path}: {where}: {left['id']} and {right['id']} are not a pair on the page "
                                 "(other prompts or seeds)")  # fmt: skip
            if left["model"] == right["model"]:
                raise InputError(f"{path}: {where}: both sides are the same model's sample")
            comparison = (left["model"], right["model"], CHOICES[choice])
            _keep(self.choices, (reviewer, sheet, frozenset((left["id"], right["id"]))), stamp, comparison)

    def per_model(self) -> tuple[dict[str, dict[str, list[int]]], dict[str, int], int]:
        """(model -> criterion -> ratings, model -> samples rated, blank entries)."""
        given: dict[str, dict[str, list[int]]] = {}
        for (_, _, sample_id, criterion), (_, value) in self.ratings.items():
            given.setdefault(self.key[sample_id]["model"], {}).setdefault(criterion, []).append(value)
        rated: dict[str, int] = {}
        done = {name[:3] for name in self.ratings}
        for _, _, sample_id in done:
            model = self.key[sample_id]["model"]
            rated[model] = rated.get(model, 0) + 1
        return given, rated, len(self.seen - done)


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
    _, key_rows = _read_csv(key_path, KEY_COLUMNS)
    ratings = _Ratings({row["id"]: row for row in key_rows}, key_path)
    for file in map(Path, files):
        if not file.is_file():
            raise InputError(f"{file}: file not found")
        ratings.read_export(file) if file.suffix.lower() == ".json" else ratings.read_csv(file)
    given_by_model, rated, skipped = ratings.per_model()
    criteria = [c for c in ratings.known if c in ratings.listed]
    order = [m for m in MODELS if m in rated] + sorted(set(rated) - set(MODELS))
    models, intervals = {}, {}
    for name in order:
        given = given_by_model.get(name, {})
        stats = {c: mean_interval(given[c]) for c in criteria if given.get(c)}
        models[name] = {"rated": rated[name]} | {c: stats[c]["mean"] if c in stats else None for c in criteria}
        intervals[name] = {c: stats[c]["ci"] for c in stats}
    comparisons = [comparison for _, comparison in ratings.choices.values()]
    seen = {m for c in comparisons for m in c[:2]}
    compared = [m for m in MODELS if m in seen] + sorted(seen - set(MODELS))
    return {
        "scale": "1-5",
        "criteria": criteria,
        "files": [str(f) for f in files],
        "rated": sum(rated.values()),
        "skipped_blank": skipped,
        "models": models,
        "intervals": intervals,
        "confidence": CONFIDENCE,
        "resamples": RESAMPLES,
        "pairwise": pairwise(comparisons, compared) if comparisons else None,
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
