"""Tokenize cleaned documents, split them by document, and pack them into fixed-size training blocks.

The split is by document (a whole play goes to train or to validation) so no text of a held-out play
leaks into training. Within a split, documents are joined with the tokenizer's EOS token and cut into
blocks of exactly `block_size` tokens; the incomplete tail is dropped, so no padding is ever needed.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from transferlm.corpus import Document
from transferlm.errors import InputError, ParamError
from transferlm.params import TokenizeParams

log = logging.getLogger(__name__)


def split_by_document(n_docs: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded shuffle of document indices; at least one document on each side."""
    if n_docs < 2:
        raise InputError(f"need at least 2 documents to hold one out for validation, got {n_docs}")
    order = list(range(n_docs))
    random.Random(seed).shuffle(order)
    n_val = min(n_docs - 1, max(1, round(n_docs * val_fraction)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def pack_blocks(token_lists: Sequence[Sequence[int]], eos_id: int, block_size: int) -> list[list[int]]:
    """Concatenate documents, each followed by EOS, and cut the stream into full blocks."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    n_blocks = len(stream) // block_size
    return [stream[i * block_size : (i + 1) * block_size] for i in range(n_blocks)]


def tokenize_documents(texts: Sequence[str], tokenizer, batch_docs: int = 4) -> list[list[int]]:
    """Batched fast tokenization, without special tokens (EOS is added between documents by packing)."""
    token_lists: list[list[int]] = []
    for start in tqdm(range(0, len(texts), batch_docs), desc="tokenize", unit="batch"):
        batch = list(texts[start : start + batch_docs])
        token_lists.extend(tokenizer(batch, add_special_tokens=False)["input_ids"])
    return token_lists


def model_context_length(model_dir: Path) -> int | None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputError(f"{config_path}: not found (run the fetch stage first)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return config.get("max_position_embeddings") or config.get("n_positions")


def build_splits(docs: list[Document], tokenizer, params: TokenizeParams):
    """Return (DatasetDict with train/validation blocks, stats for metrics/tokenize.json)."""
    from datasets import Dataset, DatasetDict

    if tokenizer.eos_token_id is None:
        raise InputError("the base model's tokenizer has no EOS token to separate documents")
    train_idx, val_idx = split_by_document(len(docs), params.val_fraction, params.seed)
    token_lists = tokenize_documents([d.text for d in docs], tokenizer)

    splits, stats = {}, {"block_size": params.block_size}
    for split, idx in (("train", train_idx), ("validation", val_idx)):
        blocks = pack_blocks([token_lists[i] for i in idx], tokenizer.eos_token_id, params.block_size)
        if not blocks:
            raise ParamError(
                f"tokenize.block_size: {params.block_size} tokens is more than the whole {split} split "
                f"({sum(len(token_lists[i]) + 1 for i in idx)} tokens); use a smaller block or a larger corpus"
            )
        splits[split] = Dataset.from_dict({"input_ids": blocks})
        stats[split] = {
            "documents": len(idx),
            "tokens": sum(len(token_lists[i]) for i in idx),
            "blocks": len(blocks),
        }
    stats["validation_documents"] = [docs[i].name for i in val_idx]
    log.info(
        "train: %d documents, %d tokens, %d blocks; validation: %d documents (%s), %d blocks",
        stats["train"]["documents"], stats["train"]["tokens"], stats["train"]["blocks"],
        stats["validation"]["documents"], ", ".join(stats["validation_documents"]),
        stats["validation"]["blocks"],
    )
    return DatasetDict(splits), stats


def check_block_size(block_size: int, model_dir: Path) -> None:
    context = model_context_length(model_dir)
    if context is not None and block_size > context:
        raise ParamError(f"tokenize.block_size: {block_size} is larger than the model's context ({context} tokens)")
