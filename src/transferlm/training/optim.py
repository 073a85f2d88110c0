"""Optimizers by name, and the FLOPs a training token costs."""

from __future__ import annotations

import torch

from transferlm.core.errors import ParamError
from transferlm.core.params import OPTIMIZERS


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: decaying norms' gains and biases only hurts."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float,
                    fused_adam: bool = True) -> torch.optim.Optimizer:
    groups = _param_groups(model, weight_decay)
    # Adam(W): torch's fused kernel, one pass over each tensor; the others: foreach=True, one multi-tensor
    # kernel per step instead of one per parameter (both measured in docs/performance.md).
    adam_kernel = {"fused": True} if fused_adam else {"foreach": True}
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), **adam_kernel)
    if name == "adam":
        # Plain Adam has no decoupled decay; its weight_decay is L2 in the gradient, as torch defines it.
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.95), **adam_kernel)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.99, foreach=True)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        # A fixed external lr, like the others, so the sweep compares optimizers at the same lrs.
        return Adafactor(groups, lr=lr, relative_step=False, scale_parameter=False, warmup_init=False)
    raise ParamError(f"train.optimizer: unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def flops_per_token(config, seq_len: int, n_params: int, full_backward: bool = True) -> float:
    """Training FLOPs per token: 6N + 12*L*d*T (Kaplan et al. 2020; PaLM appendix B).

    N counts every parameter once (with tied embeddings, the embedding is the LM head's matmul);
    the second term is attention's QK^T and AV over a context of T tokens. When only adapters train
    (LoRA), weight gradients are skipped: 4N + 8*L*d*T.
    """
    layers = config.num_hidden_layers
    width = config.hidden_size
    if full_backward:
        return 6.0 * n_params + 12.0 * layers * width * seq_len
    return 4.0 * n_params + 8.0 * layers * width * seq_len
