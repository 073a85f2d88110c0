"""Automatic measures of the compared models' samples, and their held-out perplexity's record.

Perplexity is exp of the held-out loss (transferlm.lm.heldout: the sum of per-token losses over the token
count, on the same blocks as every training curve). The sample measures are cheap
proxies for what a reader notices: lexical variety (distinct-n), loops (repetition rate), length,
verbatim copying from the training split (copy rate), and whether a sample keeps the corpus's script layout
(format rate, read as transferlm.data.layout reads the clean stage's layout).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from transferlm.core.errors import InputError
from transferlm.core.paths import MODELS
from transferlm.data.layout import PLAY, PROSE, SCREENPLAY, follows_layout
from transferlm.evaluate.review import CRITERIA

log = logging.getLogger(__name__)

SAMPLE_KEYS = ("model", "prompt", "sample", "seed", "text", "new_tokens")

# The review's criteria for each layout (evaluate.review_criteria: auto picks one set by the corpus's layout).
REVIEW_CRITERIA = {
    PLAY: {
        "coherence": CRITERIA["coherence"],
        "relevance": "Does it continue the prompt: the named speaker, the scene, the line begun?",
        "style": "Does it read like the plays it learned from: NAME: cues with the speech below, their verse "
                 "and diction?",
    },
    SCREENPLAY: {
        "coherence": CRITERIA["coherence"],
        "relevance": "Does it continue the prompt: the scene, the named speaker, the line begun?",
        "style": "Does it read like a screenplay: INT./EXT. scene headings, NAME: cues with dialogue, action "
                 "in brackets?",
    },
    PROSE: {
        "coherence": CRITERIA["coherence"],
        "relevance": "Does it continue the prompt: its people, its scene, the sentence begun?",
        "style": "Does it read like the prose it learned from: its voice, diction and paragraphs?",
    },
}


def pick_criteria(criteria: dict[str, str] | None, layout: str, reading: str) -> tuple[dict[str, str], str]:
    """(the review's criteria, a sentence saying which set and why): `criteria` as params.yaml lists them
    (EvaluateParams.criteria()), or for None the set of the corpus's layout, which `reading` explains."""
    if criteria is not None:
        return criteria, "criteria as params.yaml lists them (evaluate.review_criteria)"
    return REVIEW_CRITERIA[layout], f"{layout} criteria: {reading}"


# ---------------------------------------------------------------------------------------------- inputs


def load_tokenized(path: str | Path) -> DatasetDict:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: tokenized dataset not found")
    data = load_from_disk(str(path))
    if not isinstance(data, DatasetDict) or not {"train", "validation"} <= set(data):
        raise InputError(f"{path}: expected a DatasetDict with splits 'train' and 'validation'")
    for split in ("train", "validation"):
        if "input_ids" not in data[split].column_names:
            raise InputError(f"{path}: split {split!r} has no column 'input_ids'")
    return data


def token_blocks(split: Dataset, indices: np.ndarray | None = None) -> np.ndarray:
    """The split's rows (or the given ones) as an int64 array [blocks, block_size]."""
    rows = split.with_format("numpy")
    ids = np.asarray(rows[:]["input_ids"] if indices is None else rows[indices.tolist()]["input_ids"])
    if len(ids) and (ids.ndim != 2 or ids.dtype == object):
        raise InputError("data/tokenized: rows of input_ids differ in length; expected fixed-size blocks")
    return ids.astype(np.int64)


def read_samples(path: str | Path, models: tuple[str, ...] = MODELS) -> list[dict]:
    """A samples file's rows; each must name one of `models` (the review's also has the held-out text)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: samples file not found (run the generate stage)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {number} is not valid JSON") from None
        missing = [key for key in SAMPLE_KEYS if key not in row]
        if missing:
            raise InputError(f"{path}: line {number} lacks {', '.join(missing)}")
        if row["model"] not in models:
            raise InputError(f"{path}: line {number}: unknown model {row['model']!r}; expected {', '.join(models)}")
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ perplexity


def perplexity_entry(loss: float, tokens: int) -> dict:
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}


# --------------------------------------------------------------------------------------- sample measures


def _ngrams(items: list, n: int) -> list[tuple]:
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams, lower-cased, pooled over the texts (n-grams stay in a text)."""
    grams = [gram for text in texts for gram in _ngrams(text.lower().split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str], n: int = 4) -> float:
    """Per text, the share of word n-grams already seen earlier in that text; averaged over the texts.

    Texts too short to hold one n-gram say nothing about looping and are left out of the average.
    """
    rates = []
    for text in texts:
        grams = _ngrams(text.lower().split(), n)
        if not grams:
            continue
        seen: set[tuple] = set()
        repeats = 0
        for gram in grams:
            repeats += gram in seen
            seen.add(gram)
        rates.append(repeats / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


# An odd 64-bit multiplier for the polynomial rolling hash; numpy's uint64 arithmetic wraps mod 2**64.
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every length-n window along the last axis of `ids` (flattened).

    Rows are hashed separately, so with 2-D input no n-gram crosses a block boundary.
    """
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    windows = ids.shape[-1] - n + 1
    if windows <= 0:
        return np.empty(0, dtype=np.uint64)
    hashes = np.zeros(ids.shape[:-1] + (windows,), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * _HASH_BASE + ids[..., offset : offset + windows]
    return hashes.reshape(-1)


def train_ngram_hashes(data: DatasetDict, n: int) -> np.ndarray:
    """Sorted unique hashes of the training split's token n-grams."""
    hashes = np.unique(ngram_hashes(token_blocks(data["train"]), n))
    log.info("training split: %d distinct %d-grams", len(hashes), n)
    return hashes


def copy_rate(token_lists: list[list[int]], train_hashes: np.ndarray, n: int) -> float:
    """Share of the samples' token n-grams that occur in the training split, pooled over the samples."""
    found = total = 0
    for tokens in token_lists:
        hashes = ngram_hashes(np.asarray(tokens, dtype=np.int64), n)
        found += int(np.isin(hashes, train_hashes).sum())
        total += len(hashes)
    return found / total if total else 0.0


def format_rate(rows: list[dict], layout: str) -> float | None:
    """Share of the samples that keep the corpus's script layout (transferlm.data.layout.follows_layout); None
    for a prose corpus, which has no layout of this kind to keep."""
    if layout == PROSE:
        return None
    kept = [follows_layout(row["prompt"], row["text"], layout, complete=not _cut_short(row)) for row in rows]
    return sum(kept) / len(kept) if kept else 0.0


def _cut_short(row: dict) -> bool:
    """Whether generation stopped at max_new_tokens (so the last line may be unfinished) rather than at EOS."""
    return row["new_tokens"] >= row.get("settings", {}).get("max_new_tokens", math.inf)


def sample_measures(
    rows: list[dict], tokenizer: PreTrainedTokenizerBase, train_hashes: np.ndarray, copy_ngram: int, layout: str
) -> dict:
    """The automatic measures over one model's samples (rows of samples.jsonl); `layout` is the corpus's."""
    texts = [row["text"] for row in rows]
    tokens = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "repetition_rate": repetition_rate(texts),
        "mean_new_tokens": sum(row["new_tokens"] for row in rows) / len(rows) if rows else 0.0,
        "copy_rate": copy_rate(tokens, train_hashes, copy_ngram),
        "format_rate": format_rate(rows, layout),
    }


def samples_by_model(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped per model, in MODELS order."""
    grouped: dict[str, list[dict]] = {}
    for name in MODELS:
        model_rows = [row for row in rows if row["model"] == name]
        if model_rows:
            grouped[name] = model_rows
    return grouped
