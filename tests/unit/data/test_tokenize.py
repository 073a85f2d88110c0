"""Split-by-document and block packing (tiny inputs), and the tokenize stage's refusals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers.tiny import tiny_documents
from transferlm.core.errors import InputError, ParamError
from transferlm.core.params import TokenizeParams
from transferlm.data.corpus import Document
from transferlm.data.tokenize import (
    build_splits,
    check_block_size,
    check_enough_text,
    pack_blocks,
    split_by_document,
    split_within_document,
)

ROOT = Path(__file__).resolve().parents[3]


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


def test_pack_blocks_joins_with_eos_and_drops_the_tail():
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6]], eos_id=0, block_size=4)
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]  # the tail [0] is dropped
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


def test_streamed_blocks_are_those_of_the_whole_split_as_python_lists(tiny_model_dir):
    """More training documents than one tokenizer batch: the blocks streamed through an int32 array, and
    their dataset down to its fingerprint, are what joining every document's ids into one list gives."""
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents(14)]
    params = TokenizeParams(block_size=16, val_fraction=0.2, seed=0)
    splits, stats = build_splits(docs, tokenizer, params)
    train_idx, _ = split_by_document(len(docs), params.val_fraction, params.seed)
    assert len(train_idx) > 4  # tokenize_documents' batch is 4 documents
    stream: list[int] = []
    for i in train_idx:
        stream += tokenizer(docs[i].text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    expected = [stream[start : start + 16] for start in range(0, len(stream) // 16 * 16, 16)]
    reference = Dataset.from_dict({"input_ids": expected})
    assert splits["train"][:]["input_ids"] == expected
    assert splits["train"].features == reference.features
    assert splits["train"]._fingerprint == reference._fingerprint
    assert stats["train"]["tokens"] == len(stream) - len(train_idx)
    assert stats["train"]["blocks"] == len(expected)


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


# --- one-document corpora: held-out chunks within the document ----------------------------------------


def numbered_play(paragraphs: int, lines: int = 3) -> str:
    """A text whose every line is unique, so any shared text between the splits would show."""
    return "".join(
        "".join(f"SPEAKER{p}:\nLine {p}.{i} of the only play.\n" for i in range(lines)) + "\n"
        for p in range(paragraphs)
    )


@pytest.mark.parametrize(("text", "fraction"), [
    (numbered_play(200), 0.1),
    (numbered_play(30), 0.25),
    (numbered_play(1, lines=60), 0.2),  # one paragraph: cut at lines
    ("word " * 300, 0.1),  # one line: cut at words
])
def test_within_document_split_is_disjoint_contiguous_and_complete(text, fraction):
    train, val = split_within_document(text, fraction, seed=7)
    assert train and val
    # Every piece is a contiguous stretch, and the pieces interleave back into the text exactly.
    assert "".join(_interleave(text, train, val)) == text
    share = sum(map(len, val)) / len(text)
    assert fraction * 0.8 <= share <= fraction * 1.5 + 0.05, share
    train_lines = {ln for piece in train for ln in piece.splitlines() if ln.startswith("Line")}
    val_lines = {ln for piece in val for ln in piece.splitlines() if ln.startswith("Line")}
    assert not train_lines & val_lines
    assert split_within_document(text, fraction, seed=7) == (train, val)


def _interleave(text: str, train: list[str], val: list[str]) -> list[str]:
    """Both sides' pieces in text order, checking each starts where the last ended (no gap, no overlap)."""
    pieces, at, ti, vi = [], 0, 0, 0
    while at < len(text):
        if ti < len(train) and text.startswith(train[ti], at):
            piece, ti = train[ti], ti + 1
        elif vi < len(val) and text.startswith(val[vi], at):
            piece, vi = val[vi], vi + 1
        else:
            raise AssertionError(f"no piece continues the text at character {at}")
        pieces.append(piece)
        at += len(piece)
    assert (ti, vi) == (len(train), len(val))
    return pieces


def test_within_document_split_cuts_at_paragraphs_when_there_are_enough():
    text = numbered_play(100)
    train, val = split_within_document(text, 0.1, seed=3)
    assert 1 <= len(val) <= 4
    for chunk in val:
        assert chunk.startswith("SPEAKER") and chunk.endswith("\n\n")


def test_an_unbreakable_single_document_is_refused():
    with pytest.raises(InputError, match="one unbroken word"):
        split_within_document("x" * 1000, 0.1, seed=0)


def test_one_document_gets_a_within_document_split(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    doc = Document("input", "input.txt", numbered_play(40))
    splits, stats = build_splits([doc], tokenizer, TokenizeParams(block_size=16, val_fraction=0.2, seed=0))
    assert stats["split_method"] == "within_document" and stats["validation_documents"] == []
    assert stats["train"]["blocks"] > stats["validation"]["blocks"] > 0
    train_text = tokenizer.decode(sum(splits["train"]["input_ids"], []))
    val_text = tokenizer.decode(sum(splits["validation"]["input_ids"], []))
    val_lines = {ln for ln in val_text.splitlines() if ln.startswith("Line") and ln.endswith(".")}
    assert val_lines and not val_lines & set(train_text.splitlines())


def test_several_documents_keep_the_by_document_split(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    docs = [Document(**d) for d in tiny_documents(3)]
    _, stats = build_splits(docs, tokenizer, TokenizeParams(block_size=16, val_fraction=0.34, seed=0))
    assert stats["split_method"] == "by_document" and len(stats["validation_documents"]) == 1


def test_a_corpus_too_small_for_two_blocks_is_refused(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    n_tokens = len(tokenizer("HAMLET:\nTo be.\n", add_special_tokens=False)["input_ids"]) + 1
    tiny = [Document("a", "a.txt", "HAMLET:\nTo be.\n")]
    check_enough_text(tiny, tokenizer, TokenizeParams(block_size=n_tokens // 2))
    with pytest.raises(InputError) as info:
        check_enough_text(tiny, tokenizer, TokenizeParams(block_size=n_tokens // 2 + 1))
    assert str(info.value).startswith(f"fetch.corpus: the corpus is too small: {n_tokens} tokens, but one "
                                      f"training block and one validation block of tokenize.block_size")
