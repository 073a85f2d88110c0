"""Auto prompts: passages of the validation split only, cut at line boundaries, reproducible with the seed."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from transferlm.core.errors import InputError
from transferlm.core.params import TokenizeParams
from transferlm.data.clean import write_documents
from transferlm.data.corpus import Document
from transferlm.data.tokenize import build_splits
from transferlm.evaluate.prompts import auto_prompts, describe_source, listed_prompts, validation_pieces

SPLIT = TokenizeParams(block_size=16, val_fraction=0.34, seed=0)


def play(number: int) -> str:
    """A little play whose every line is its own, so a prompt's text tells which split it came from."""
    speeches = [f"SPEAKER{number}:\nLine {line} of play {number}, spoken once.\n" for line in range(12)]
    return f"Play {number}\n\n" + "\n".join(speeches)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def count(tokenizer):
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def write_corpus(root, tokenizer, texts: list[str]):
    """data/clean/documents.jsonl and metrics/tokenize.json as the clean and tokenize stages write them."""
    docs = [Document(f"play-{i}", "test", text) for i, text in enumerate(texts)]
    splits, stats = build_splits(docs, tokenizer, SPLIT)
    (root / "clean").mkdir()
    write_documents(root / "clean" / "documents.jsonl", docs)
    (root / "tokenize.json").write_text(json.dumps(stats))
    return docs, splits, stats


def split_text(splits, split: str, tokenizer) -> str:
    return tokenizer.decode([token for row in splits[split]["input_ids"] for token in row])


def test_auto_prompts_are_validation_text_cut_at_line_starts_and_ends(tmp_path, tokenizer):
    docs, splits, stats = write_corpus(tmp_path, tokenizer, [play(i) for i in range(6)])
    pieces = validation_pieces(tmp_path / "clean" / "documents.jsonl", tmp_path / "tokenize.json", 0.34, 0)
    assert [piece.document for piece in pieces] == stats["validation_documents"]
    prompts = auto_prompts(pieces, 4, 40, seed=1, tokens=count(tokenizer))  # a cue and its line
    assert len(prompts) == 4
    text_of = {doc.name: doc.text for doc in docs}
    validation, train = split_text(splits, "validation", tokenizer), split_text(splits, "train", tokenizer)
    for prompt in prompts:
        source = prompt.source
        assert source["document"] in stats["validation_documents"]
        text = text_of[source["document"]]
        assert text[source["start"] : source["end"]] == prompt.text
        assert source["start"] == 0 or text[source["start"] - 1] == "\n"  # starts a line
        assert prompt.text.endswith("\n") and not prompt.text.endswith("\n\n")  # ends one
        assert prompt.text.startswith("SPEAKER")  # a speech starts in every stretch: the prompt starts there
        assert count(tokenizer)(prompt.text) <= 40
        assert prompt.text in validation and prompt.text not in train
    # Evenly spread: one prompt from each quarter of the validation text.
    assert len({(p.source["document"], p.source["start"]) for p in prompts}) == 4

    again = auto_prompts(pieces, 4, 40, seed=1, tokens=count(tokenizer))
    assert again == prompts
    assert auto_prompts(pieces, 4, 40, seed=2, tokens=count(tokenizer)) != prompts


def test_one_document_corpus_prompts_come_from_its_held_out_chunks(tmp_path, tokenizer):
    (doc,), splits, stats = write_corpus(tmp_path, tokenizer, ["\n".join(play(i) for i in range(8))])
    assert stats["split_method"] == "within_document"
    pieces = validation_pieces(tmp_path / "clean" / "documents.jsonl", tmp_path / "tokenize.json", 0.34, 0)
    assert sum(len(piece.text) for piece in pieces) == stats["validation"]["chars"]
    for piece in pieces:
        assert doc.text[piece.start : piece.start + len(piece.text)] == piece.text
    validation, train = split_text(splits, "validation", tokenizer), split_text(splits, "train", tokenizer)
    for prompt in auto_prompts(pieces, 3, 40, seed=0, tokens=count(tokenizer)):  # a cue and its line
        assert doc.text[prompt.source["start"] : prompt.source["end"]] == prompt.text
        assert "Line" in prompt.text and prompt.text in validation and prompt.text not in train
    # Other split params than tokenize used: another held-out text, refused.
    with pytest.raises(InputError, match="not the one tokenize's params give now"):
        validation_pieces(tmp_path / "clean" / "documents.jsonl", tmp_path / "tokenize.json", 0.2, 0)


def test_a_line_longer_than_the_budget_is_cut_after_a_word(tmp_path, tokenizer):
    prose = ["Word after word " * 200 + "end.\n\n" + "Another long paragraph, " * 100 for _ in range(3)]
    write_corpus(tmp_path, tokenizer, prose)
    pieces = validation_pieces(tmp_path / "clean" / "documents.jsonl", tmp_path / "tokenize.json", 0.34, 0)
    for prompt in auto_prompts(pieces, 2, 10, seed=0, tokens=count(tokenizer)):
        assert 0 < count(tokenizer)(prompt.text) <= 10
        assert not prompt.text[-1].isspace() and prompt.source["end"] - prompt.source["start"] == len(prompt.text)


def test_stale_split_metrics_are_refused(tmp_path, tokenizer):
    write_corpus(tmp_path, tokenizer, [play(i) for i in range(6)])
    stats = json.loads((tmp_path / "tokenize.json").read_text())
    (tmp_path / "tokenize.json").write_text(json.dumps(stats | {"validation_documents": ["gone"]}))
    with pytest.raises(InputError, match="validation document 'gone' is not in"):
        validation_pieces(tmp_path / "clean" / "documents.jsonl", tmp_path / "tokenize.json", 0.34, 0)


def test_listed_prompts_cite_their_place_in_params():
    (first, second) = listed_prompts(["HAMLET:\n", "ROMEO:\n"])
    assert second.text == "ROMEO:\n" and describe_source(second.source) == "generate.prompts[1] in params.yaml"
    assert describe_source({"document": "hamlet", "start": 1200, "end": 1350}) == (
        "hamlet, characters 1,200-1,350 (validation split)"
    )


def test_the_reference_is_the_held_out_text_right_after_the_prompt(tokenizer):
    from transferlm.evaluate.prompts import Piece, Prompt, continuation

    text = "BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me: stand, and unfold yourself.\n"
    piece = Piece("hamlet", 1000, text)
    end = 1000 + text.index("FRANCISCO")
    prompt = Prompt(text[: end - 1000], {"document": "hamlet", "start": 1000, "end": end})
    found, tokens = continuation(prompt, [piece], 6, tokenizer)
    after = tokenizer(text[end - 1000 :], add_special_tokens=False)["input_ids"]
    assert tokens == 6 and found == tokenizer.decode(after[:6])  # as many tokens as a sample gets
    assert text[end - 1000 :].startswith(found)
    # A prompt whose text lies in no validation piece (a listed prompt, or training text) has no reference.
    assert continuation(Prompt("ROMEO:\n", {"param": "generate.prompts[0]"}), [piece], 6, tokenizer) is None
    elsewhere = Prompt("x", {"document": "othello", "start": 0, "end": 5})
    assert continuation(elsewhere, [piece], 6, tokenizer) is None
