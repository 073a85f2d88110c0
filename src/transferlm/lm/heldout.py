"""The one held-out loss: mean next-token NLL over every predicted token of a set of blocks.

Training curves, the study's rankings and evaluate's perplexity all call `heldout_loss` on the blocks
that `transferlm.lm.blocks.heldout_blocks` picks, so a model has one held-out loss wherever it is reported.
The loss is summed per token in fp32 (the fused loss's softmax runs in fp32 under bf16 autocast too)
and divided by the token count, never a mean of per-batch means.
"""

from __future__ import annotations

import functools
import math

import torch

from transferlm.lm.device import autocast
from transferlm.lm.speed import CausalLMLoss, SpeedSettings, eager_mode, lever_applies


@torch.no_grad()
def heldout_loss(model, blocks: torch.Tensor, batch_size: int, precision: str = "fp32",
                 speed: SpeedSettings | None = None) -> tuple[float, int]:
    """(mean loss per predicted token, number of predicted tokens) of `model` on `blocks`; `speed`: a run's
    lever switches (a lever it switches off is off here too)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_of = CausalLMLoss(model, fused=lever_applies("fused_loss", precision, speed))
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        with autocast(device, precision), eager_mode():  # compiled layers: no extra no_grad compile
            loss = loss_of(batch)
        tokens = batch[:, 1:].numel()
        total += loss.float().item() * tokens
        count += tokens
    model.train(was_training)
    return total / count, count


# --------------------------------------------------------------------------------------- bits per byte
# Nats per token depend on the tokenizer: a model with a coarser tokenizer has fewer, harder tokens.
# Bits per byte (total nats over the scored text / its UTF-8 bytes / ln 2) compare across base models.


def heldout_bytes_per_token(blocks: torch.Tensor, tokenizer_dir) -> float:
    """UTF-8 bytes per scored token of `blocks` (every token but each block's first, as heldout_loss scores
    them), decoded with the tokenizer in `tokenizer_dir`; special tokens (EOS between documents) count no bytes."""
    return _bytes_per_token(tuple(map(tuple, blocks.tolist())), str(tokenizer_dir))


@functools.lru_cache(maxsize=4)
def _bytes_per_token(blocks: tuple[tuple[int, ...], ...], tokenizer_dir: str) -> float:
    texts = _tokenizer(tokenizer_dir).batch_decode([block[1:] for block in blocks], skip_special_tokens=True)
    total = sum(len(text.encode("utf-8")) for text in texts)
    return total / sum(len(block) - 1 for block in blocks)


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Mean nats per token -> bits per byte of the same text."""
    return loss / bytes_per_token / math.log(2) if bytes_per_token > 0 else math.nan


# ------------------------------------------------------------------------------- samples while training


@torch.no_grad()
def greedy_continuation(model, prompt: torch.Tensor, new_tokens: int, precision: str = "fp32") -> list[int]:
    """The model's greedy continuation of `prompt` (token ids): deterministic, so the samples logged at each
    evaluation differ only because the model changed. No KV cache: a few dozen tokens, once per evaluation."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = prompt[None].to(device)
    for _ in range(new_tokens):
        with autocast(device, precision), eager_mode():
            logits = model(input_ids=ids).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True).to(ids.dtype)], dim=1)
    model.train(was_training)
    return ids[0, len(prompt):].tolist()


@functools.lru_cache(maxsize=2)
def _tokenizer(tokenizer_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)


def decode(ids: list[int], tokenizer_dir) -> str:
    return _tokenizer(str(tokenizer_dir)).decode(ids, skip_special_tokens=True)
