"""The generate stage's prompts: listed in params.yaml, or (`generate.prompts: auto`) cut from the held-out text.

Auto prompts are real text of the user's own corpus that no compared model trained on: passages of the
validation split, read from the cleaned documents (data/clean) that the tokenize stage split, so each can
be cited by document and character offset. The split is the tokenize stage's own: the documents
metrics/tokenize.json lists as held out, or, for a one-document corpus, the held-out chunks
`split_within_document` picks with the same params (checked against the characters tokenize counted).

The validation text is cut into `auto_prompts` equal stretches; in each, a seeded position is moved on to
the next start of a speech (a `NAME:` cue after a blank line), else of a paragraph, else of a line, and
whole lines are taken from there up to about `prompt_tokens` tokens. A line longer than that on its own
(prose paragraphs are one line) is cut after its last word that fits. A passage with the same text as an
earlier prompt (a cue alone, in a short budget) is left out: samples and review pairs go by prompt text.
"""

from __future__ import annotations

import bisect
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transferlm.core import artifacts
from transferlm.core.errors import InputError
from transferlm.core.params import GenerateParams, TokenizeParams
from transferlm.core.paths import TOKENIZE_METRICS
from transferlm.data.clean import read_documents
from transferlm.data.layout import line_kind
from transferlm.data.tokenize import split_within_document

log = logging.getLogger(__name__)

SPLIT_METRICS = TOKENIZE_METRICS  # the tokenize stage's split: method and held-out documents


@dataclass(frozen=True)
class Piece:
    """A stretch of the validation split: `text` is document `document`'s characters [start, start + len)."""

    document: str
    start: int
    text: str


@dataclass(frozen=True)
class Prompt:
    text: str
    source: dict  # samples.jsonl's prompt_source: {document, start, end} or {param}


def listed_prompts(prompts: list[str]) -> list[Prompt]:
    return [Prompt(text, {"param": f"generate.prompts[{i}]"}) for i, text in enumerate(prompts)]


def validation_pieces(documents: Path, split_metrics: Path, val_fraction: float, seed: int) -> list[Piece]:
    """The validation split's text, as the tokenize stage held it out (tokenize.val_fraction and .seed), with
    where each piece lies."""
    stats = artifacts.read_json(split_metrics, "tokenize")
    docs = read_documents(documents)
    if stats.get("split_method") == "within_document":
        if len(docs) != 1:
            raise InputError(f"{split_metrics}: a split within one document, but {documents} holds {len(docs)} "
                             "(rerun the tokenize stage)")
        doc = docs[0]
        train, held = split_within_document(doc.text, val_fraction, seed)
        pieces = _placed(doc.name, doc.text, train, held)
        chars = stats.get("validation", {}).get("chars")
        if sum(len(p.text) for p in pieces) != chars:
            raise InputError(f"{split_metrics}: its validation split ({chars} characters) is not the one tokenize's "
                             "params give now (rerun the tokenize stage)")
        return pieces
    text_of = {doc.name: doc.text for doc in docs}
    names = stats.get("validation_documents") or []
    missing = [name for name in names if name not in text_of]
    if not names or missing:
        what = f"validation document {missing[0]!r} is not in {documents}" if missing else "no validation documents"
        raise InputError(f"{split_metrics}: {what} (rerun the tokenize stage)")
    return [Piece(name, 0, text_of[name]) for name in names]


def _placed(name: str, text: str, train: list[str], held: list[str]) -> list[Piece]:
    """The held-out chunks with their offsets: train and held-out pieces alternate and join to the text."""
    for held_first in (len(held) > len(train), len(held) == len(train)):
        order = [held, train] if held_first else [train, held]
        pieces, pos = [], 0
        for i in range(len(train) + len(held)):
            piece = order[i % 2][i // 2]
            if order[i % 2] is held:
                pieces.append(Piece(name, pos, piece))
            pos += len(piece)
        if "".join(order[i % 2][i // 2] for i in range(len(train) + len(held))) == text:
            return pieces
    raise AssertionError("split_within_document's pieces do not join to the document")  # a programming error


_LINE_START = re.compile(r"^(?=\S)", re.M)


def auto_prompts(
    pieces: list[Piece], count: int, prompt_tokens: int, seed: int, tokens: Callable[[str], int]
) -> list[Prompt]:
    """`count` prompts of about `prompt_tokens` tokens (counted by `tokens`), evenly spread over `pieces`."""
    pieces = [piece for piece in pieces if piece.text.strip()]
    if not pieces:
        raise InputError("generate.prompts: auto, but the validation split holds no text")
    offsets = [0]  # where each piece starts in all pieces joined; the last entry is their total length
    for piece in pieces:
        offsets.append(offsets[-1] + len(piece.text))
    line_starts = [[m.start() for m in _LINE_START.finditer(piece.text)] for piece in pieces]
    rng = random.Random(seed)
    prompts = []
    for region in range(count):
        lo = region * offsets[-1] // count
        hi = max(lo + 1, (region + 1) * offsets[-1] // count)
        at = rng.randrange(lo, hi)
        number = bisect.bisect_right(offsets, at) - 1
        piece, base = pieces[number], offsets[number]
        start = _start(piece.text, line_starts[number], at - base, min(len(piece.text), hi - base))
        end = _end(piece.text, start, prompt_tokens, tokens)
        source = {"document": piece.document, "start": piece.start + start, "end": piece.start + end}
        if all(prompt.text != piece.text[start:end] for prompt in prompts):  # samples are keyed by prompt text
            prompts.append(Prompt(piece.text[start:end], source))
    if len(prompts) < count:
        log.warning("%d auto prompt(s) left out: the same text as an earlier one", count - len(prompts))
    return prompts


def _line_end(text: str, start: int) -> int:
    newline = text.find("\n", start)
    return len(text) if newline == -1 else newline


def _start(text: str, line_starts: list[int], offset: int, region_end: int) -> int:
    """The first start of a speech at or after `offset` within the region, else of a paragraph, else of a
    line; when no line starts there, the last line start before `offset`."""
    first = bisect.bisect_left(line_starts, offset)
    ahead = line_starts[first : bisect.bisect_left(line_starts, region_end)]
    if not ahead:
        return line_starts[max(0, first - 1)]
    paragraphs = [s for s in ahead if s == 0 or text.startswith("\n\n", s - 2)]
    speeches = [s for s in paragraphs if line_kind(text[s : _line_end(text, s)]) == "cue"]
    return (speeches or paragraphs or ahead)[0]


def _end(text: str, start: int, prompt_tokens: int, tokens: Callable[[str], int]) -> int:
    """Where the prompt from `start` ends: after its last whole line within prompt_tokens (blank lines at
    its end left out), or, when the first line alone is longer, after that line's last word that fits."""
    end = start
    while end < len(text):
        line_end = min(len(text), _line_end(text, end) + 1)  # the newline goes with its line
        if tokens(text[start:line_end]) > prompt_tokens:
            break
        end = line_end
    if end == start:  # one long line: its words up to the budget, at least one
        words = [start + m.end() for m in re.finditer(r"\S+", text[start : _line_end(text, start)])]
        return next((w for w in reversed(words) if tokens(text[start:w]) <= prompt_tokens), words[0])
    kept = text[start:end]
    return start + len(kept.rstrip("\n")) + (kept.endswith("\n"))


def resolve_prompts(settings: GenerateParams, tokenize: TokenizeParams, documents: Path, split_metrics: Path,
                    tokens: Callable[[str], int]) -> tuple[list[Prompt], list[Piece]]:
    """The stage's prompts: the listed ones, or `auto` ones from the validation split; and the validation
    pieces they were cut from (none for listed prompts), where their real continuations are read."""
    # Read either way: dvc.yaml lists both for the generate stage, which reruns when they change.
    val_fraction, seed = tokenize.val_fraction, tokenize.seed
    if settings.prompts != "auto":
        return listed_prompts(settings.prompts), []
    pieces = validation_pieces(documents, split_metrics, val_fraction, seed)
    return auto_prompts(pieces, settings.auto_prompts, settings.prompt_tokens, settings.seed, tokens), pieces


def continuation(prompt: Prompt, pieces: list[Piece], new_tokens: int, tokenizer) -> tuple[str, int] | None:
    """The held-out text that really follows an auto prompt and its token count: `new_tokens` tokens (as many
    as a sample gets, fewer where its piece ends), from the same validation piece only, never training
    text. None for a listed prompt."""
    source = prompt.source
    piece = next((p for p in pieces if p.document == source.get("document")
                  and p.start <= source["end"] <= p.start + len(p.text)), None)
    if piece is None:
        return None
    # A token is rarely longer than 16 characters: that much text holds the tokens asked for.
    after = piece.text[source["end"] - piece.start :][: 16 * new_tokens]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"][:new_tokens]
    return (tokenizer.decode(ids, skip_special_tokens=True), len(ids)) if ids else None


def describe_source(source: dict) -> str:
    """A prompt's origin in words, for samples.md and the report."""
    if "param" in source:
        return f"{source['param']} in params.yaml"
    return f"{source['document']}, characters {source['start']:,}-{source['end']:,} (validation split)"
