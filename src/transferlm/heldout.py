"""The one held-out loss: mean next-token NLL over every predicted token of a set of blocks.

Training curves, the study's rankings and evaluate's perplexity all call `heldout_loss` on the blocks
that `transferlm.data.heldout_blocks` picks, so a model has one held-out loss wherever it is reported.
The loss is summed per token in fp32 (the fused loss's softmax runs in fp32 under bf16 autocast too)
and divided by the token count, never a mean of per-batch means.
"""

from __future__ import annotations

import torch

from transferlm.device import autocast
from transferlm.speed import CausalLMLoss, eager_mode, lever_on


@torch.no_grad()
def heldout_loss(model, blocks: torch.Tensor, batch_size: int, precision: str = "fp32") -> tuple[float, int]:
    """(mean loss per predicted token, number of predicted tokens) of `model` on `blocks`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_of = CausalLMLoss(model, fused=lever_on("fused_loss", precision))
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
