"""Loading and saving models: the pretrained base, the same family at other sizes from random weights,
LoRA adapters, and finished models for generation and evaluation.

Weights load only from safetensors (never a pickle) and remote code is never run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from transferlm.core.errors import InputError
from transferlm.core.params import Shape

# The files in which transformers looks for `auto_map`, the pointer to a model's own Python classes.
CODE_POINTERS = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def refuse_remote_code(folder: Path, what: str) -> None:
    """Refuse a model folder whose config points at Python code of its own (`auto_map`).

    Every load also passes trust_remote_code=False, so such code never runs; without this check transformers
    would refuse in several lines, or for an architecture it knows quietly use its own class instead.
    """
    for name in CODE_POINTERS:
        file = folder / name
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or unreadable: the loader reports what it needs
            continue
        if isinstance(data, dict) and "auto_map" in data:
            raise InputError(f"{what}: {name} points at the model's own Python code (auto_map); refused, "
                             f"code shipped with a model is never run")


def check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: model directory not found")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a model directory (no config.json; run the fetch stage first)")
    refuse_remote_code(path, str(path))
    return path


def load_tokenizer(path: str | Path):
    """The tokenizer saved in a model directory; any code it points at is refused, never run."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(check_model_dir(path), trust_remote_code=False)


def load_pretrained(base_dir: Path, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        check_model_dir(base_dir), dtype=dtype, use_safetensors=True, trust_remote_code=False
    )


def scratch_config(base_dir: Path, shape: Shape | None):
    """The base model's config, resized to `shape` (None: the base model's own size)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(check_model_dir(base_dir), trust_remote_code=False)
    if shape is not None:
        for key, value in shape.config_overrides().items():
            setattr(config, key, value)
    return config


def new_model(base_dir: Path, shape: Shape | None, seed: int):
    """The base model's family at `shape`, freshly initialised with `seed`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(scratch_config(base_dir, shape), dtype=torch.float32)


def apply_lora(model, r: int, alpha: int, dropout: float):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def save_model(model, tokenizer_dir: Path, out_dir: Path, card=None) -> None:
    """Plain Hugging Face layout: safetensors weights, config, tokenizer and a model card (README.md)."""
    model.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(tokenizer_dir).save_pretrained(out_dir)
    if card is not None:
        card.save(out_dir / "README.md")


def inference_dtype(device: torch.device) -> torch.dtype:
    # bf16 weights on GPUs that have it; fp32 on CPU, where sampling is memory-bound and bf16 weights
    # would change the reported perplexities for no measured gain.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_for_inference(path: str | Path, device: torch.device | None = None):
    """A model in eval mode on `device` and its tokenizer, set up for left-padded batches."""
    from transformers import AutoModelForCausalLM

    from transferlm.lm.device import pick_device

    path = check_model_dir(path)
    device = device or pick_device()
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "left"  # generation continues at the right end of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=inference_dtype(device), use_safetensors=True, trust_remote_code=False
    ).to(device).eval()
    return model, tokenizer
