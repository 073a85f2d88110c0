"""A tiny Llama-shaped model, a tiny byte-level BPE tokenizer and tiny documents, built offline in seconds.

They stand in for the real base model in unit tests and in the end-to-end `dvc repro` test: same
classes, same save layout (config.json + model.safetensors + tokenizer.json), ~30k parameters.
`python tests/tiny.py setup` (a script that calls this module's setup) saves the tiny model to models-tiny/
and overlays tests/helpers/tiny_params.yaml on params.yaml (used by the end-to-end tests, by CI's pipeline run
and by bench/gpu_check.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

TINY_TEXT = """HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them.

OPHELIA:
Good my lord, how does your honour for this many a day?

ROMEO:
But soft, what light through yonder window breaks?
It is the east, and Juliet is the sun.
"""


def build_tiny_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TINY_TEXT] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def build_tiny_model(tokenizer, seed: int = 0, max_positions: int = 256):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def tiny_documents(n: int = 6) -> list[dict]:
    """Distinct little 'plays': each repeats its own marker so a leak across the split would show."""
    docs = []
    for i in range(n):
        speech = f"PLAYER{i}:\nThis is play number {i}, and it speaks its own lines.\n\n"
        docs.append({"name": f"Play {i}", "source": "test", "text": (TINY_TEXT + speech) * 3})
    return docs


def save_tiny_model(out: Path) -> Path:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def overlay_params(params_file: Path, overlay_file: Path) -> None:
    """Deep-merge the tiny overlay into params.yaml, so every key DVC tracks still exists."""
    import yaml

    def merge(base: dict, over: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    params = merge(yaml.safe_load(params_file.read_text()), yaml.safe_load(overlay_file.read_text()))
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def setup_tiny_pipeline(repo: Path) -> None:
    save_tiny_model(repo / "models-tiny")
    overlay_params(repo / "params.yaml", repo / "tests/helpers/tiny_params.yaml")


def main(argv: list[str]) -> None:
    if argv != ["setup"]:
        raise SystemExit("usage: python tests/tiny.py setup   (in the repository root)")
    setup_tiny_pipeline(Path.cwd())


if __name__ == "__main__":
    main(sys.argv[1:])
