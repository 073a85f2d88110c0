"""Shared fixtures: a tiny model directory and a tiny tokenized corpus (tests/helpers/tiny.py), and the one
tiny `dvc repro` of every stage that the end-to-end tests read or clone (tests/helpers/project.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.project import SharedTinyRun, shared_tiny_run
from helpers.tiny import save_tiny_model, tiny_documents


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model + tokenizer directory in plain Hugging Face layout (read-only for tests)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenized_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """data/tokenized-style DatasetDict for the tiny model: block_size 32, documents split by name."""
    from transformers import AutoTokenizer

    from transferlm.core.params import TokenizeParams
    from transferlm.data.corpus import Document
    from transferlm.data.tokenize import build_splits

    out = tmp_path_factory.mktemp("tiny-tokenized") / "tokenized"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents()]
    splits, _ = build_splits(docs, tokenizer, TokenizeParams(block_size=32, val_fraction=0.34, seed=0))
    splits.save_to_disk(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> SharedTinyRun:
    """The tiny pipeline after one real `dvc repro` of every stage, once per test session: READ-ONLY.

    Tests read its files (`tiny_repo.path`); a test that runs dvc, changes params or reruns stages works in
    `tiny_repo.clone(tmp_path / "repo")` (work tree, git history, DVC cache and run-cache: it starts warm).
    Under pytest-xdist each worker has its own session: the workers share one build in the folder above
    their temp folders, under a file lock (pytest-xdist's documented pattern), so it runs once in all."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: nothing to share with
        return shared_tiny_run(tmp_path_factory.mktemp("tiny-repo"))
    shared = tmp_path_factory.getbasetemp().parent
    return shared_tiny_run(shared / "tiny-repo", lock_root=shared)


def pytest_collection_modifyitems(items):
    """Files with slow tests run first, each file's tests in their own order. Under `make test`'s
    parallel workers (whole files per worker) the long end-to-end files then start at once and the quick
    files fill in around them, instead of one long file running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
