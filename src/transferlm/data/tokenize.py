"""Tokenize cleaned documents, split them into train and validation, and pack them into fixed-size blocks.

With several documents the split is by document (a whole play goes to train or to validation) so no text
of a held-out play leaks into training. A corpus of one document (a novel, a screenplay dump, the usual
`input.txt`) is split within it instead: a few contiguous chunks, cut at paragraph (else line, else word)
boundaries and together about `val_fraction` of the text, are held out; the training text is what lies
between them, so the two never share a character. metrics/tokenize.json says which (`split_method`).

Within a split, pieces are joined with the tokenizer's EOS token and cut into blocks of exactly
`block_size` tokens; the incomplete tail is dropped, so no padding is ever needed. The split's token ids
are streamed, a few documents at a time, into one int32 array (4 bytes a token); the blocks are views of
it, copied once into the Arrow column. No Python list holds a whole split's tokens.
"""

from __future__ import annotations

import json
import logging
import random
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from transferlm.core.errors import InputError, ParamError
from transferlm.core.params import TokenizeParams
from transferlm.data.corpus import Document

log = logging.getLogger(__name__)


# Held-out chunks of a one-document corpus: up to this many, spread over the text, so validation samples
# more than one scene; each needs a few units around it, hence about one chunk per 20 units.
MAX_CHUNKS = 4
UNITS_PER_CHUNK = 20
# Boundaries to cut a single document at, coarsest first: paragraphs, lines, words. The separator stays
# with the unit before it, so joining the units gives back the text exactly.
_BOUNDARIES = (re.compile(r"(?<=\n\n)(?=[^\n])"), re.compile(r"(?<=\n)(?=[^\n])"), re.compile(r"(?<=\s)(?=\S)"))


def _units(text: str) -> list[str]:
    """The text cut at the coarsest boundary that gives enough units to hold some out."""
    best = [text]
    for boundary in _BOUNDARIES:
        units = boundary.split(text)
        if len(units) > len(best):
            best = units
        if len(best) >= 2 * UNITS_PER_CHUNK:
            break
    return best


def split_within_document(text: str, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training pieces, held-out chunks) of one document; joined in order they give back the text.

    The text is cut into units (paragraphs, else lines, else words) and into equal regions of
    characters; in each region a seeded contiguous run of units, about `val_fraction` of the region, is
    held out. At least one unit stays on each side.
    """
    units = _units(text)
    if len(units) < 2:
        raise InputError("the only document is one unbroken word; it cannot be split into train and validation")
    starts, total = [], 0
    for unit in units:
        starts.append(total)
        total += len(unit)
    n_chunks = max(1, min(MAX_CHUNKS, len(units) // UNITS_PER_CHUNK))
    region_of = [min(n_chunks - 1, n_chunks * start // max(total, 1)) for start in starts]
    rng = random.Random(seed)
    held = [False] * len(units)
    for region in range(n_chunks):
        members = [i for i, r in enumerate(region_of) if r == region]
        if not members:
            continue
        lo, hi = members[0], members[-1] + 1
        want = val_fraction * sum(len(units[i]) for i in range(lo, hi))
        first = last = rng.randrange(lo, hi)
        got = len(units[first])
        while got < want and (last + 1 < hi or first > lo):  # grow forward, then backward at the region end
            if last + 1 < hi:
                last += 1
                got += len(units[last])
            else:
                first -= 1
                got += len(units[first])
        for i in range(first, last + 1):
            held[i] = True
    if all(held):  # one huge unit can swallow a one-region document; keep the last unit for training
        held[-1] = False
    train, val = [], []
    for i, unit in enumerate(units):
        side = val if held[i] else train
        if i > 0 and held[i] == held[i - 1]:
            side[-1] += unit
        else:
            side.append(unit)
    return train, val


def split_by_document(n_docs: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded shuffle of document indices; at least one document on each side."""
    if n_docs < 2:
        raise InputError(f"need at least 2 documents to hold one out for validation, got {n_docs}")
    order = list(range(n_docs))
    random.Random(seed).shuffle(order)
    n_val = min(n_docs - 1, max(1, round(n_docs * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def token_stream(token_lists: Iterable[Sequence[int]], eos_id: int) -> np.ndarray:
    """Documents' token ids, each followed by EOS, as one flat int32 array.

    The ids go into an `array("i")` as they come (4 bytes a token, grown in place), so only the
    documents being tokenized are ever Python ints. A token id beyond int32 raises OverflowError.
    """
    stream = array("i")
    if stream.itemsize != 4:  # C int is 32 bits on every platform Python supports; say so if not
        raise RuntimeError(f"array('i') has {stream.itemsize}-byte items, not 4")
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    return np.frombuffer(stream, dtype=np.int32) if stream else np.zeros(0, dtype=np.int32)


def cut_blocks(stream: np.ndarray, block_size: int) -> np.ndarray:
    """The stream's full blocks, as a (blocks, block_size) view of it; the incomplete tail is dropped."""
    n_blocks = len(stream) // block_size
    return stream[: n_blocks * block_size].reshape(n_blocks, block_size)


def pack_blocks(token_lists: Iterable[Sequence[int]], eos_id: int, block_size: int) -> np.ndarray:
    """Concatenate documents, each followed by EOS, and cut the stream into full blocks (int32 rows)."""
    return cut_blocks(token_stream(token_lists, eos_id), block_size)


def blocks_dataset(blocks: np.ndarray):
    """A Dataset with one row per block, column `input_ids` of type list<int32>.

    It is the dataset `Dataset.from_dict({"input_ids": <blocks as lists of ints>})` builds, down to its
    fingerprint (a hash of the pickled Arrow table). from_dict makes int64 values and casts them to
    int32 (datasets' choice for `input_ids`); a cast leaves the values' null count uncounted, which the
    pickle records. So the int32 values here are also a cast's output: from the same bits read as
    uint32 (token ids are never negative, and a safe cast would refuse one). That cast is the one copy,
    4 bytes a token; the caller can then free `blocks`.
    """
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    n_blocks, block_size = blocks.shape
    flat = np.ascontiguousarray(blocks, dtype=np.int32).reshape(-1)
    values = pa.array(flat.view(np.uint32)).cast(pa.int32())
    offsets = pa.array(np.arange(0, (n_blocks + 1) * block_size, block_size, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, values)
    return Dataset(InMemoryTable(pa.table({"input_ids": column})))


def tokenize_documents(texts: Sequence[str], tokenizer, batch_docs: int = 4) -> Iterator[list[int]]:
    """Each text's token ids, in order, without special tokens (EOS is added between documents by packing).

    Batched fast tokenization; a generator, so only one batch's ids exist as Python ints at a time.
    """
    for start in tqdm(range(0, len(texts), batch_docs), desc="tokenize", unit="batch"):
        batch = list(texts[start : start + batch_docs])
        yield from tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def model_context_length(model_dir: Path) -> int | None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputError(f"{config_path}: not found (run the fetch stage first)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return config.get("max_position_embeddings") or config.get("n_positions")


def build_splits(docs: list[Document], tokenizer, params: TokenizeParams):
    """Return (DatasetDict with train/validation blocks, stats for metrics/tokenize.json)."""
    from datasets import DatasetDict

    if tokenizer.eos_token_id is None:
        raise InputError("the base model's tokenizer has no EOS token to separate documents")
    if len(docs) == 1:
        method, val_names = "within_document", []
        train_texts, val_texts = split_within_document(docs[0].text, params.val_fraction, params.seed)
        counts = {"train": 1, "validation": 1}
    else:
        method = "by_document"
        train_idx, val_idx = split_by_document(len(docs), params.val_fraction, params.seed)
        train_texts, val_texts = [docs[i].text for i in train_idx], [docs[i].text for i in val_idx]
        val_names = [docs[i].name for i in val_idx]
        counts = {"train": len(train_idx), "validation": len(val_idx)}

    splits, stats = {}, {"block_size": params.block_size, "split_method": method}
    for split, texts in (("train", train_texts), ("validation", val_texts)):
        stream = token_stream(tokenize_documents(texts, tokenizer), tokenizer.eos_token_id)
        blocks = cut_blocks(stream, params.block_size)
        if not len(blocks):
            raise ParamError(
                f"tokenize.block_size: {params.block_size} tokens is more than the whole {split} split "
                f"({len(stream)} tokens); use a smaller block or a larger corpus"
            )
        splits[split] = blocks_dataset(blocks)
        stats[split] = {
            "documents": counts[split],
            "pieces": len(texts),
            "chars": sum(len(t) for t in texts),
            "tokens": len(stream) - len(texts),  # one EOS follows each piece
            "blocks": len(blocks),
        }
        del stream, blocks  # the dataset holds its own copy; free this split's array before the next
    stats["validation_documents"] = val_names
    log.info(
        "split %s; train: %d documents, %d tokens, %d blocks; validation: %d documents (%s), %d blocks",
        method.replace("_", " "), stats["train"]["documents"], stats["train"]["tokens"], stats["train"]["blocks"],
        stats["validation"]["documents"], ", ".join(val_names) or f"{len(val_texts)} held-out chunks",
        stats["validation"]["blocks"],
    )
    return DatasetDict(splits), stats


def check_enough_text(documents: list[Document], tokenizer, params: TokenizeParams) -> None:
    """Refuse a corpus too small for one training block and one validation block, before any stage runs on it.

    Counted with the base model's own tokenizer on the raw text, one document at a time and only until
    there is enough, so a large corpus costs one document's tokenization. It is a necessary condition
    (cleaning only shrinks text, and the split must leave a full block on each side); the tokenize stage
    still checks each split exactly.
    """
    needed = 2 * params.block_size
    tokens = 0
    for doc in documents:
        tokens += len(tokenizer(doc.text, add_special_tokens=False)["input_ids"]) + 1  # + the EOS after it
        if tokens >= needed:
            return
    raise InputError(
        f"fetch.corpus: the corpus is too small: {tokens} tokens, but one training block and one validation "
        f"block of tokenize.block_size ({params.block_size}) need at least {needed}"
    )


def check_block_size(block_size: int, model_dir: Path) -> None:
    context = model_context_length(model_dir)
    if context is not None and block_size > context:
        raise ParamError(f"tokenize.block_size: {block_size} is larger than the model's context ({context} tokens)")
