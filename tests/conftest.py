"""Shared fixtures over tests/tiny.py: a tiny model directory and a tiny tokenized corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny import TINY_TEXT, build_tiny_model, build_tiny_tokenizer, save_tiny_model, tiny_documents  # noqa: F401


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model + tokenizer directory in plain Hugging Face layout (read-only for tests)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenized_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """data/tokenized-style DatasetDict for the tiny model: block_size 32, documents split by name."""
    from transformers import AutoTokenizer

    from transferlm.corpus import Document
    from transferlm.params import TokenizeParams
    from transferlm.tokenize import build_splits

    out = tmp_path_factory.mktemp("tiny-tokenized") / "tokenized"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents()]
    splits, _ = build_splits(docs, tokenizer, TokenizeParams(block_size=32, val_fraction=0.34, seed=0))
    splits.save_to_disk(str(out))
    return out


def pytest_collection_modifyitems(items):
    """Files with slow tests run first, each file's tests in their own order. Under `make test`'s
    parallel workers (whole files per worker) the long end-to-end files then start at once and the quick
    files fill in around them, instead of one long file running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
