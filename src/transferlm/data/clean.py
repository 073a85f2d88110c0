"""Clean raw documents into training text: a fixed pipeline of rules, then dedupe and a length floor.

The seed asked to remove "unnecessary characters, punctuation and special symbols". For a text
generator punctuation IS the signal (verse lines, questions, the `NAME:` cue structure), so the rules
remove only what no play contains: encoding noise, markup, page furniture, licence text. Each rule is
a pure function str -> (str, edits); the order is fixed because later rules rely on earlier ones:

  1. control_chars  first, so no invisible character (a BOM, a zero-width space) hides a pattern below
  2. unicode        NFKC and plain quotes/dashes, so later patterns only need ASCII punctuation
  3. boilerplate    Gutenberg licences, page numbers and (CONTINUED)/(MORE) furniture go before
                    script_layout, which would otherwise read `(MORE)` as a parenthetical
  4. script_layout  must see the markdown cues (`**HAMLET**`) and directions (`_Exit_`) that markup
                    would strip; it rewrites them to `HAMLET:` and `[Exit]`
  5. markup         strips whatever markdown/HTML is left (emphasis inside speeches, prose documents);
                    its code is in transferlm.data.markup
  6. whitespace     last, to tidy the blank lines and trailing spaces the other rules leave behind

Each rule can be switched off in params.yaml (clean.*); metrics/clean.json records, per rule, the
characters it removed (negative where a rule adds some: unicode turns an em dash into `--`) and its number
of edits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from transferlm.core import artifacts
from transferlm.core.errors import InputError
from transferlm.core.params import CleanParams
from transferlm.data.corpus import Document
from transferlm.data.markup import strip_markup
from transferlm.data.script_layout import to_canonical_layout_counted

log = logging.getLogger(__name__)


# --- control_chars -----------------------------------------------------------------------------

# C0 and C1 controls except \t and \n, plus invisible format characters: zero-width space/joiners,
# direction marks, word joiner, BOM and soft hyphen.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")


def drop_control_chars(text: str) -> tuple[str, int]:
    return _CONTROL.subn("", text)


# --- unicode -----------------------------------------------------------------------------------

# Em dashes become "--", the convention the corpus already uses (9,000 times) for a broken-off
# phrase; en dashes, which join ranges and compounds, become "-".
_PLAIN = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2014": "--", "\u2015": "--",
    "\u2013": "-", "\u2012": "-", "\u2010": "-", "\u2011": "-", "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ", "\u202f": " ", "\u2007": " ",
}  # fmt: skip
_PLAIN_RE = re.compile("[" + "".join(_PLAIN) + "]")


def fix_unicode(text: str) -> tuple[str, int]:
    text, count = _PLAIN_RE.subn(lambda m: _PLAIN[m.group()], text)
    if not unicodedata.is_normalized("NFKC", text):
        count += sum(1 for ch in text if not unicodedata.is_normalized("NFKC", ch))
        text = unicodedata.normalize("NFKC", text)
        # NFKC can make characters of the table (a vertical-form em dash becomes an em dash): map those
        # too, so that the rule is idempotent. The table's outputs are ASCII, which NFKC leaves alone.
        text, more = _PLAIN_RE.subn(lambda m: _PLAIN[m.group()], text)
        count += more
    return text, count


# --- boilerplate -------------------------------------------------------------------------------

_GUTENBERG_START = re.compile(
    r"^\*{3}[ \t]*START OF (?:THE |THIS )?PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$", re.M | re.I
)
_GUTENBERG_END = re.compile(
    r"^\*{3}[ \t]*END OF (?:THE |THIS )?PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.M | re.I,
)
# Lines that are only a page number (`12`, `12.`, `- 12 -`, `Page 12`, `[Pg 12]`) or screenplay page
# furniture (`(CONTINUED)`, `CONTINUED: (2)`, `(MORE)`, a lone `(CONT'D)`, with scene numbers).
# Transitions such as `CUT TO:` are NOT furniture: they mark scene structure, so script_layout keeps
# them (as `[CUT TO:]`, so they are not read as a speaker called CUT TO).
_FURNITURE_LINE = re.compile(
    r"^[ \t]*(?:"
    r"(?i:(?:page|pg\.?|p\.)[ \t]*\d{1,4}|\[(?:page|pg\.?|p\.)?[ \t]*\d{1,4}\]"
    r"|-[ \t]*\d{1,4}[ \t]*-|\d{1,4}\.?)"
    r"|(?:\d+[A-Z]?[ \t]+)?"
    r"(?:\(CONTINUED\)|CONTINUED:?(?:[ \t]*\(\d+\))?|\(MORE\)|\(CONT'D\))(?:[ \t]+\d+[A-Z]?)?"
    r")[ \t]*(?:\n|\Z)",
    re.M,
)


def strip_boilerplate(text: str) -> tuple[str, int]:
    count = 0
    if start := _GUTENBERG_START.search(text):
        text = text[start.end() :]
        count += 1
    if end := _GUTENBERG_END.search(text):
        text = text[: end.start()]  # the end marker and the licence after it
        count += 1
    text, lines = _FURNITURE_LINE.subn("", text)
    return text, count + lines


# --- whitespace --------------------------------------------------------------------------------

_TRAILING = re.compile(r"(?<! ) +$", re.M)  # from the start of a run only: linear, not quadratic
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalise_whitespace(text: str) -> tuple[str, int]:
    count = text.count("\t")
    text = text.replace("\t", " ")
    text, n_trailing = _TRAILING.subn("", text)
    text, n_blank = _BLANK_RUNS.subn("\n\n", text)
    stripped = text.strip()
    return stripped, count + n_trailing + n_blank + (stripped != text)


# --- the pipeline ------------------------------------------------------------------------------

# A rule returns its number of edits, or a mapping that holds "count" and its own tallies (script_layout:
# scenes, cues, speeches), which metrics/clean.json records next to chars_removed.
Rule = Callable[[str], tuple[str, int | dict[str, int]]]
RULES: tuple[tuple[str, Rule], ...] = (
    ("control_chars", drop_control_chars),
    ("unicode", fix_unicode),
    ("boilerplate", strip_boilerplate),
    ("script_layout", to_canonical_layout_counted),
    ("markup", strip_markup),
    ("whitespace", normalise_whitespace),
)


def clean_text(text: str, params: CleanParams) -> tuple[str, dict[str, dict[str, int]]]:
    """Run the enabled rules in order; return the text and {rule: {chars_removed, count}}."""
    stats: dict[str, dict[str, int]] = {}
    for name, rule in RULES:
        if not getattr(params, name):
            continue
        cleaned, count = rule(text)
        tallies = count if isinstance(count, dict) else {"count": count}
        stats[name] = {"chars_removed": len(text) - len(cleaned)} | tallies
        text = cleaned
    return text, stats


def clean_corpus(docs: list[Document], params: CleanParams) -> tuple[list[Document], dict]:
    """Clean every document, drop short ones and repeats; return the kept documents and the metrics.

    metrics["rules"] also holds min_chars and dedupe (chars of the dropped documents, documents
    dropped), so the chars_removed of all rules add up to chars_in - chars_out.
    """
    rules = {name: {"chars_removed": 0, "count": 0} for name, _ in RULES if getattr(params, name)}
    rules["min_chars"] = {"chars_removed": 0, "count": 0}
    if params.dedupe:
        rules["dedupe"] = {"chars_removed": 0, "count": 0}
    kept: list[Document] = []
    dropped: list[dict[str, str]] = []
    seen: dict[str, str] = {}  # sha256 of cleaned text -> name of the first document with it
    for doc in tqdm(docs, desc="clean", unit="doc"):
        text, stats = clean_text(doc.text, params)
        for name, s in stats.items():
            for tally, value in s.items():
                rules[name][tally] = rules[name].get(tally, 0) + value
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if len(text) < params.min_chars:
            drop, reason = "min_chars", f"shorter than min_chars ({len(text)} < {params.min_chars})"
        elif params.dedupe and digest in seen:
            drop, reason = "dedupe", f"duplicate of {seen[digest]}"
        else:
            seen.setdefault(digest, doc.name)
            kept.append(Document(doc.name, doc.source, text))
            continue
        rules[drop]["chars_removed"] += len(text)
        rules[drop]["count"] += 1
        dropped.append({"name": doc.name, "reason": reason})
    metrics = {
        "documents_in": len(docs),
        "documents_out": len(kept),
        "chars_in": sum(len(d.text) for d in docs),
        "chars_out": sum(len(d.text) for d in kept),
        "rules": rules,
        "dropped": dropped,
    }
    log.info(
        "cleaned %d documents: kept %d, dropped %d; %d -> %d chars",
        len(docs), len(kept), len(dropped), metrics["chars_in"], metrics["chars_out"],
    )  # fmt: skip
    return kept, metrics


# --- input and output --------------------------------------------------------------------------


MANIFEST_FIELDS = ("name", "source", "file")


def read_raw_documents(raw_dir: Path) -> list[Document]:
    """Read data/raw/manifest.json and the documents it lists (the fetch stage's contract)."""
    manifest = raw_dir / "manifest.json"
    entries = artifacts.read_json(manifest, "fetch")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{manifest}: expected a non-empty list of documents")
    docs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in MANIFEST_FIELDS):
            raise InputError(f"{manifest}: entry {i} needs string fields name, source and file")
        path = raw_dir / entry["file"]
        if not path.resolve().is_relative_to(raw_dir.resolve()):
            raise InputError(f"{manifest}: entry {i} file {entry['file']!r} points outside {raw_dir}")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: listed in {manifest} but missing") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        docs.append(Document(entry["name"], entry["source"], text))
    return docs


def write_documents(path: Path, docs: list[Document]) -> None:
    """data/clean/documents.jsonl: one {"name", "source", "text"} object per line."""
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            record = {"name": doc.name, "source": doc.source, "text": doc.text}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_documents(path: Path) -> list[Document]:
    """Read data/clean/documents.jsonl (written by write_documents)."""
    if not path.is_file():
        raise InputError(f"{path}: not found (run the clean stage first)")
    docs = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                docs.append(Document(row["name"], row.get("source", ""), row["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{path}:{lineno}: not a {{name, text}} JSON line") from None
    if not docs:
        raise InputError(f"{path}: no documents (the corpus is empty after cleaning)")
    return docs
