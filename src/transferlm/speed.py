"""What makes the training step fast, each lever switchable so bench/train_throughput.py can weigh it.

The levers, all on by default (figures in bench/README.md):

- fused_loss: the causal-LM loss without the full logits. SmolLM2's head turns every hidden state into
  49,152 logits: 50M per batch of 8 x 128. The stock path keeps them in bf16, copies them to fp32,
  takes log_softmax, and in backward builds fp32 and bf16 gradients of the same size: about 0.7 GB of
  fresh memory per step, each byte page-faulted in, then read and written several times. Here the head's
  forward and backward run together, one chunk of tokens at a time: a chunk's logits, their softmax and
  the gradient of the mean loss with respect to them, written straight into one bf16 buffer. Two matmuls
  then give the gradients of the hidden states and of the head's weight. Same FLOPs, same precision
  (bf16 matmuls, fp32 softmax), a fraction of the memory traffic.
- fused_optimizer: torch's fused Adam/AdamW kernel (one pass over each tensor) instead of foreach.
- keep_freed_memory: glibc hands freed blocks above 128 kB-32 MB back to the OS and page-faults them in
  again on the next step; on CPU that was a large share of the step. Telling malloc to keep them makes
  the second step onwards fault-free. Peak memory is unchanged: it is what the step needs at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

CHUNK_TOKENS = 256  # tokens per chunk of the fused loss: its fp32 logits are 256 x vocab x 4 B (50 MB)


@dataclass
class Levers:
    fused_loss: bool = True
    fused_optimizer: bool = True
    keep_freed_memory: bool = True


# The training code reads these; only bench/train_throughput.py changes them, to measure each one off.
LEVERS = Levers()


# ------------------------------------------------------------------------------------------- memory


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed memory instead of returning it to the OS (CPU training only).

    Returns False where this is not glibc (then nothing changes).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    # Serve every allocation up to 1 GiB from the heap, and never trim the heap's free top back.
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))


# --------------------------------------------------------------------------------------------- loss


def _compute_dtype(device: torch.device, fallback: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return fallback


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (hidden @ weight.T) against targets; the gradients are made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype: torch.dtype, chunk: int):
        n = hidden.shape[0]
        h, w = hidden.to(dtype), weight.to(dtype)
        grad_logits = torch.empty(n, w.shape[0], dtype=dtype, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            rows = torch.arange(stop - start, device=hidden.device)
            target = targets[start:stop]
            logits = (h[start:stop] @ w.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits[rows, target]).sum()
            # d(mean loss)/d(logits) = (softmax - onehot) / n, built in place over the fp32 logits.
            probs = logits.sub_(lse[:, None]).exp_()
            probs[rows, target] -= 1.0
            grad_logits[start:stop] = probs.mul_(1.0 / n)
        ctx.save_for_backward(grad_logits, h, w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_output):
        grad_logits, h, w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_logits @ w).to(hidden_dtype) * grad_output
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_logits.T @ h).to(weight_dtype) * grad_output
        return grad_hidden, grad_weight, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = CHUNK_TOKENS
) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T ([n, d] x [vocab, d]) against targets [n].

    Matmuls run in the autocast dtype when autocast is on, else in hidden's dtype; the softmax in fp32,
    as in the stock Hugging Face path. Without gradients it only sums the loss, chunk by chunk.
    """
    dtype = _compute_dtype(hidden.device, hidden.dtype)
    with torch.autocast(hidden.device.type, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return _FusedLinearCrossEntropy.apply(hidden, weight, targets, dtype, chunk)
        h, w = hidden.to(dtype), weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, len(h), chunk):
            logits = (h[start : start + chunk] @ w.T).float()
            total += torch.nn.functional.cross_entropy(logits, targets[start : start + chunk], reduction="sum")
        return total / len(h)


def _causal_lm(model):
    """The transformers *ForCausalLM inside a peft wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def fused_loss_applies(model) -> bool:
    """True for heads that are a plain bias-free linear map of the decoder's last hidden state."""
    lm = _causal_lm(model)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    config = getattr(lm, "config", None)
    scaled = any(getattr(config, key, None) not in (None, 1.0) for key in ("final_logit_softcapping", "logit_scale"))
    return (
        type(head) is torch.nn.Linear
        and head.bias is None
        and not scaled
        and callable(getattr(lm, "get_decoder", None))
    )


class CausalLMLoss(torch.nn.Module):
    """A causal LM whose forward(input_ids) is its mean next-token loss over the whole batch.

    The training loop prepares this wrapper (so DDP sees the whole loss computation); `.model` is the
    Hugging Face (or peft) model itself.
    """

    def __init__(self, model: torch.nn.Module, fused: bool = True):
        super().__init__()
        self.model = model
        self.fused = fused and fused_loss_applies(model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return self.model(input_ids=input_ids, labels=input_ids).loss
        lm = _causal_lm(self.model)
        hidden = lm.get_decoder()(input_ids=input_ids).last_hidden_state
        return fused_linear_cross_entropy(
            hidden[:, :-1].flatten(0, 1), lm.get_output_embeddings().weight, input_ids[:, 1:].flatten()
        )
