"""Split-by-document and block packing (tiny inputs), and the tokenize stage's refusals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import tiny_documents
from transferlm.errors import InputError, ParamError
from transferlm.params import TokenizeParams
from transferlm.corpus import Document
from transferlm.tokenize import build_splits, check_block_size, pack_blocks, split_by_document

ROOT = Path(__file__).resolve().parents[1]


def test_split_is_disjoint_complete_and_seeded():
    train, val = split_by_document(10, 0.2, seed=3)
    assert sorted(train + val) == list(range(10))
    assert not set(train) & set(val)
    assert len(val) == 2
    assert split_by_document(10, 0.2, seed=3) == (train, val)
    assert split_by_document(10, 0.2, seed=4) != (train, val)


def test_split_keeps_a_document_on_each_side():
    train, val = split_by_document(2, 0.9, seed=0)
    assert len(train) == 1 and len(val) == 1
    with pytest.raises(InputError, match="at least 2 documents"):
        split_by_document(1, 0.1, seed=0)


def test_pack_blocks_joins_with_eos_and_drops_the_tail():
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6]], eos_id=0, block_size=4)
    assert blocks == [[1, 2, 3, 0], [4, 5, 0, 6]]  # the tail [0] is dropped
    assert all(len(b) == 4 for b in blocks)


def test_no_validation_document_leaks_into_train(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents()]
    splits, stats = build_splits(docs, tokenizer, TokenizeParams(block_size=16, val_fraction=0.34, seed=0))
    assert stats["train"]["documents"] + stats["validation"]["documents"] == len(docs)
    train_text = tokenizer.decode(sum(splits["train"]["input_ids"], []))
    val_text = tokenizer.decode(sum(splits["validation"]["input_ids"], []))
    for name in stats["validation_documents"]:
        marker = f"play number {name.split()[-1]},"
        assert marker in val_text
        assert marker not in train_text
    assert stats["train"]["blocks"] == len(splits["train"])
    assert all(len(row) == 16 for row in splits["validation"]["input_ids"])


def test_block_larger_than_split_is_refused(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents(3)]
    with pytest.raises(ParamError, match="tokenize.block_size"):
        build_splits(docs, tokenizer, TokenizeParams(block_size=100_000, val_fraction=0.34, seed=0))


def test_block_larger_than_context_is_refused(tiny_model_dir):
    check_block_size(256, tiny_model_dir)
    with pytest.raises(ParamError, match="larger than the model's context"):
        check_block_size(257, tiny_model_dir)


def _project(tmp_path: Path, tiny_model_dir: Path, block_size: int) -> Path:
    (tmp_path / "data/clean").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "models/base").symlink_to(tiny_model_dir)
    with (tmp_path / "data/clean/documents.jsonl").open("w") as f:
        for doc in tiny_documents():
            f.write(json.dumps(doc) + "\n")
    (tmp_path / "params.yaml").write_text(f"tokenize:\n  block_size: {block_size}\n  val_fraction: 0.34\n")
    return tmp_path


def test_stage_writes_both_outputs(tmp_path, tiny_model_dir):
    project = _project(tmp_path, tiny_model_dir, 32)
    subprocess.run([sys.executable, ROOT / "stages/tokenize_corpus.py"], cwd=project, check=True,
                   capture_output=True)
    stats = json.loads((project / "metrics/tokenize.json").read_text())
    assert stats["validation"]["blocks"] > 0 and stats["train"]["blocks"] > stats["validation"]["blocks"]
    assert (project / "data/tokenized/dataset_dict.json").is_file()


def test_stage_refuses_a_block_beyond_the_context_and_writes_nothing(tmp_path, tiny_model_dir):
    project = _project(tmp_path, tiny_model_dir, 4096)
    proc = subprocess.run([sys.executable, ROOT / "stages/tokenize_corpus.py"], cwd=project,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tokenize.block_size: 4096")
    assert not (project / "data/tokenized").exists()
    assert not (project / "metrics/tokenize.json").exists()
