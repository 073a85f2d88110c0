"""The training loss without the full logits: a chunked, fused cross-entropy through the LM head.

A causal LM's head turns every hidden state into vocab_size logits. For SmolLM2 (49,152 tokens) and a
batch of 8 x 128 that is 50M logits per step; the stock path keeps them in bf16, copies them to fp32,
takes log_softmax, and in backward builds fp32 and bf16 gradients of the same size: about 0.7 GB of
fresh memory per step, most of it page-faulted in, read and written several times. Here the head's
forward and backward run together, one chunk of tokens at a time: logits of a chunk, their softmax,
and the gradient of the mean loss with respect to them, written straight into a bf16 buffer. Two
matmuls then give the gradients of the hidden states and of the head's weight. FLOPs are the same as
the stock path's; the memory traffic and the page faults are not.
"""

from __future__ import annotations

import torch

CHUNK_TOKENS = 256  # tokens per chunk: its fp32 logits (256 x 49,152 x 4 B = 50 MB) stay reusable


def _compute_dtype(device: torch.device, fallback: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return fallback


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (hidden @ weight.T) against targets; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype,
                chunk: int) -> torch.Tensor:
        n = hidden.shape[0]
        h = hidden.to(dtype)
        w = weight.to(dtype)
        grad_logits = torch.empty(n, w.shape[0], dtype=dtype, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            logits = (h[start:stop] @ w.T).float()
            rows = torch.arange(stop - start, device=hidden.device)
            target = targets[start:stop]
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits[rows, target]).sum()
            # d(mean loss)/d(logits) = (softmax - onehot) / n, built in place in the fp32 chunk.
            probs = logits.sub_(lse[:, None]).exp_()
            probs[rows, target] -= 1.0
            grad_logits[start:stop] = probs.mul_(1.0 / n)
        ctx.save_for_backward(grad_logits, h, w)
        ctx.shapes = (hidden.dtype, weight.dtype, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return total / n

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_logits, h, w = ctx.saved_tensors
        hidden_dtype, weight_dtype, need_hidden, need_weight = ctx.shapes
        grad_hidden = grad_weight = None
        if need_hidden:
            grad_hidden = (grad_logits @ w).to(hidden_dtype) * grad_output
        if need_weight:
            grad_weight = (grad_logits.T @ h).to(weight_dtype) * grad_output
        return grad_hidden, grad_weight, None, None, None


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T ([n, d] @ [d, vocab]) against targets [n].

    Matmuls run in the autocast dtype when autocast is on (bf16 on this project's machines), the softmax
    in fp32, as the stock Hugging Face path does. Without gradients it only sums the loss, chunk by chunk.
    """
    dtype = _compute_dtype(hidden.device, hidden.dtype)
    with torch.autocast(hidden.device.type, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return _FusedLinearCrossEntropy.apply(hidden, weight, targets, dtype, chunk)
        h, w = hidden.to(dtype), weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            logits = (h[start : start + chunk] @ w.T).float()
            total += torch.nn.functional.cross_entropy(logits, targets[start : start + chunk], reduction="sum")
        return total / hidden.shape[0]
