"""What makes the training step fast, each lever switchable so bench/train_throughput.py can weigh it.

(Over 300 lines: the six levers, each with the measurement that put it here, kept side by side.)

The levers, on by default where measured faster (figures per CPU and precision in docs/performance.md):

- fused_loss: the causal-LM loss without the full logits. SmolLM2's head turns every hidden state into
  49,152 logits: 50M per batch of 8 x 128. The stock path keeps them in bf16, copies them to fp32,
  takes log_softmax, and in backward builds fp32 and bf16 gradients of the same size: about 0.7 GB.
  Here the head's forward and backward run together, one chunk of tokens at a time: a chunk's logits,
  their softmax and the gradient of the loss with respect to them, written straight into one bf16
  buffer (0.1 GB). Two matmuls then give the gradients of the hidden states and of the head's weight.
  Same FLOPs, same precision (bf16 matmuls, fp32 softmax); it lowers peak memory, not step time.
- fused_optimizer: torch's fused Adam/AdamW kernel (one pass over each tensor) instead of foreach.
- short_attention: on CPU with short blocks, causal attention as a few batched matmuls that recompute
  the softmax in backward. torch's CPU flash-attention kernel (what "sdpa" picks) took a fifth of the
  step at 128 tokens, mostly in backward. transformers' "eager" attention is as fast but keeps every
  layer's [batch, heads, T, T] probabilities for backward (+0.4 GB here); this keeps none of them.
  bf16 only: in fp32 sdpa is as fast and keeps no more (NO_GAIN_ON).
- keep_freed_memory: glibc serves large blocks (128 kB, rising to 32 MB) with mmap, returns them to the
  OS when freed and page-faults them in again on the next step (0.4M faults per step here). Telling
  malloc to keep them makes the step fault-free; peak memory stays what the step needs at its peak.
- fused_layers: the decoder layers' RMSNorm and SwiGLU as two small autograd functions. Under bf16
  autocast the stock RMSNorm returns fp32, and autocast then casts it to bf16 once per projection that
  reads it (q, k and v; gate and up): five casts per layer where two do, each kept for backward. The
  fused norm returns the matmul dtype once and keeps only its input and 1/rms; the fused SwiGLU keeps
  gate and up and recomputes silu in backward. Same forward values; about 0.35 GB less at the peak.
  In fp32 there are no casts to save, but it still keeps less for backward (0.3 GB); no faster, no slower.
- compile: torch.compile each decoder layer (the layers share one compiled graph, so it compiles once).
  Inductor fuses the norms, rotary embedding and activations and saves fewer intermediates for backward.
  Compiling costs about 12 s on this 2-core CPU (2-3 s with inductor's on-disk cache warm), so it is
  used only for runs whose training FLOPs make that worth it (COMPILE_MIN_FLOPS). No run of the default
  params reaches it (the fine-tune is 1.3e13 FLOPs, the longest scratch run 3.8e13); larger budgets do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import types
from dataclasses import dataclass, field

import torch

CHUNK_TOKENS = 256  # tokens per chunk of the fused loss: its fp32 logits are 256 x vocab x 4 B (50 MB)


@dataclass
class Levers:
    fused_loss: bool = True
    fused_optimizer: bool = True
    short_attention: bool = True
    keep_freed_memory: bool = True
    fused_layers: bool = True
    compile: bool = True


# The library's defaults: the training code asks `lever_applies` below, never these fields directly. A caller
# that switches levers off for one run (bench/train_throughput.py) passes SpeedSettings to train() instead
# of changing this object (tests may patch its fields; do not rebind the name, other modules hold it).
LEVERS = Levers()

# Levers that bought nothing on one precision's path: measured slower there, or neither faster nor leaner.
# Off by default on that path only. bf16 is fast on some CPUs and slow on others, so `precision: auto` may
# train in fp32, and a lever that pays for itself in bf16 need not in fp32 (figures: docs/performance.md).
# short_attention in fp32: step time on/off 1.006 (AMX Xeon) and 1.000 (AVX2 emulated on a Zen 4), 16 paired
# steps each (bench/lever_ab.py), and the same bytes kept for backward as sdpa. fused_layers stays on in fp32:
# no faster (1.002) but it keeps 0.3 GB less for backward than the stock norm and MLP.
NO_GAIN_ON: dict[str, frozenset[str]] = {"bf16": frozenset(), "fp32": frozenset({"short_attention"})}


def lever_on(name: str, precision: str) -> bool:
    """Whether lever `name` applies on the path of `precision` (bf16 | fp32): on in LEVERS, not in NO_GAIN_ON."""
    return bool(getattr(LEVERS, name)) and name not in NO_GAIN_ON[precision]


COMPILE_MIN_FLOPS = 5e13  # training FLOPs below which compiling costs more time than it saves


@dataclass(frozen=True)
class SpeedSettings:
    """One run's own lever switches, passed to transferlm.training.loop.train (the default: today's library
    defaults unchanged). A lever off in `levers` is off for the run; one on applies where the library's
    defaults (LEVERS, NO_GAIN_ON) have it on. `compile_min_flops`: the training FLOPs from which to compile
    (None: COMPILE_MIN_FLOPS)."""

    levers: Levers = field(default_factory=Levers)
    compile_min_flops: float | None = None

    def allows(self, name: str) -> bool:
        return bool(getattr(self.levers, name))

    def min_flops(self) -> float:
        return COMPILE_MIN_FLOPS if self.compile_min_flops is None else self.compile_min_flops


def lever_applies(name: str, precision: str, settings: SpeedSettings | None = None) -> bool:
    """lever_on, and not switched off by a run's `settings` (None: the library's defaults alone)."""
    return lever_on(name, precision) and (settings is None or settings.allows(name))


def _compute_dtype(device: torch.device, fallback: torch.dtype) -> torch.dtype:
    """The dtype autocast would run a matmul in here (the custom functions below turn autocast off)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return fallback


def _causal_lm(model):
    """The transformers *ForCausalLM inside a peft wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# --------------------------------------------------------------------------------------------- loss


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
            logp = torch.log_softmax(h[start:stop] @ w.T, dim=-1, dtype=torch.float32)
            total -= logp[rows, target].sum()
            # d(summed loss)/d(logits) = softmax - onehot, stored in the matmul dtype; 1/n comes in backward.
            grad = torch.exp(logp, out=grad_logits[start:stop])
            grad[rows, target] -= 1.0
        ctx.save_for_backward(grad_logits, h, w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_output):
        grad_logits, h, w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        scale = grad_output / len(h)
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_logits @ w).to(hidden_dtype).mul_(scale)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_logits.T @ h).to(weight_dtype).mul_(scale)
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
            target = targets[start : start + chunk]
            total += torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        return total / len(h)


def fused_loss_applies(model) -> bool:
    """True for heads that are a plain bias-free linear map of the decoder's last hidden state."""
    lm = _causal_lm(model)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    config = getattr(lm, "config", None)
    scaled = any(getattr(config, key, None) not in (None, 1.0)
                 for key in ("final_logit_softcapping", "logit_scale"))
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


# ----------------------------------------------------------------------------------- norm and MLP


class _RMSNorm(torch.autograd.Function):
    """weight * x / rms(x) in fp32 (as transformers' LlamaRMSNorm computes it), returned in `dtype`."""

    @staticmethod
    def forward(ctx, x, weight, eps: float, dtype: torch.dtype):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return (weight * (x * rstd)).to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd = ctx.saved_tensors
        grad_out = grad_out.float()
        grad_weight = (grad_out * (x * rstd)).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
        grad_normed = grad_out * weight
        # d/dx of x * rsqrt(mean(x^2) + eps), in the terms stock autograd uses: where the mean square
        # overflowed (rstd 0) it gives the same 0 or NaN, and a NaN is how the loop learns a run blew up.
        coef = (grad_normed * x).mean(-1, keepdim=True).mul_(rstd.pow(3))
        return grad_normed.mul_(rstd).sub_(x * coef), grad_weight, None, None


class _SiluMul(torch.autograd.Function):
    """silu(gate) * up, keeping only gate and up for backward (silu is recomputed there)."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx, grad_out):
        gate, up = ctx.saved_tensors
        # The stock path's own kernels in its own dtype: the same gradients, bit for bit.
        grad_gate = torch.ops.aten.silu_backward(grad_out * up, gate)
        return grad_gate, grad_out * torch.nn.functional.silu(gate)


_NORMS = {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"}  # all weight * x / rms(x)
_MLPS = {"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"}  # all down(act(gate(x)) * up(x))


def _fused_norm_forward(norm, hidden_states):
    if hidden_states.dtype != torch.float32 or norm.weight.dtype != torch.float32:
        return type(norm).forward(norm, hidden_states)  # bf16 weights or states: stock rounding differs
    dtype = _compute_dtype(hidden_states.device, torch.float32)
    with torch.autocast(hidden_states.device.type, enabled=False):
        return _RMSNorm.apply(hidden_states, norm.weight, norm.variance_epsilon, dtype)


def _fused_mlp_forward(mlp, x):
    return mlp.down_proj(_SiluMul.apply(mlp.gate_proj(x), mlp.up_proj(x)))


def fuse_layers(model) -> list[torch.nn.Module]:
    """Give the model's RMSNorms and SiLU MLPs the fused forwards above; returns the modules changed.

    Each forward is a method bound to its module as an instance attribute (so a deep copy binds to the
    copy); `unfuse` restores the class's own.
    """
    changed = []
    for module in _causal_lm(model).modules():
        name = type(module).__name__
        if name in _NORMS and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_fused_norm_forward, module)
        elif name in _MLPS and type(getattr(module, "act_fn", None)).__name__ in {"SiLU", "SiLUActivation"}:
            module.forward = types.MethodType(_fused_mlp_forward, module)
        else:
            continue
        changed.append(module)
    return changed


def unfuse(modules: list[torch.nn.Module]) -> None:
    for module in modules:
        del module.forward


# --------------------------------------------------------------------------------------- attention

SHORT_ATTENTION = "transferlm_short"
SHORT_ATTENTION_MAX_TOKENS = 256  # measured at 128 tokens; longer blocks keep "sdpa" (not measured here)


class _ShortCausalAttention(torch.autograd.Function):
    """softmax(q k^T * scale, causal) v with grouped key/value heads, for short sequences.

    Query heads sharing a key/value head are stacked along the rows ([B, kv_heads, groups*T, D]), so
    each product is one batched matmul and keys/values are never repeated. Backward keeps only q, k and
    v and recomputes the probabilities (one more small matmul), so no [.., T, T] tensor outlives a layer.
    """

    @staticmethod
    def _probs(q, k, scale: float) -> torch.Tensor:
        groups_t, t = q.shape[2], k.shape[2]
        # Row r of a group is query position r % t: it sees keys 0..r % t.
        positions = torch.arange(t, device=q.device)
        future = positions[None, :] > positions.repeat(groups_t // t)[:, None]
        scores = (q @ k.transpose(-1, -2)).float().masked_fill_(future, float("-inf"))
        return torch.softmax(scores.mul_(scale), dim=-1)

    @staticmethod
    def forward(ctx, q, k, v, scale: float, dtype: torch.dtype):
        batch, heads, t, dim = q.shape
        kv_heads = k.shape[1]
        q = q.to(dtype).reshape(batch, kv_heads, heads // kv_heads * t, dim)
        k, v = k.to(dtype), v.to(dtype)
        out = _ShortCausalAttention._probs(q, k, scale).to(dtype) @ v
        ctx.save_for_backward(q, k, v)
        ctx.scale, ctx.heads = scale, heads
        return out.view(batch, heads, t, dim).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        batch, kv_heads, rows, dim = q.shape
        t = k.shape[2]
        grad_out = grad_out.transpose(1, 2).to(q.dtype).reshape(batch, kv_heads, rows, dim)
        probs = _ShortCausalAttention._probs(q, k, ctx.scale)
        grad_v = probs.to(q.dtype).transpose(-1, -2) @ grad_out
        grad_probs = (grad_out @ v.transpose(-1, -2)).float()
        # softmax backward: dS = P * (dP - rowsum(P * dP)), times the score scale.
        delta = (probs * grad_probs).sum(dim=-1, keepdim=True)
        grad_scores = grad_probs.sub_(delta).mul_(probs).mul_(ctx.scale).to(q.dtype)
        grad_q = (grad_scores @ k).view(batch, ctx.heads, t, dim)
        grad_k = grad_scores.transpose(-1, -2) @ q
        return grad_q, grad_k, grad_v, None, None


def short_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                            scaling: float | None = None, **kwargs):
    """A transformers attention function (see AttentionInterface) for unpadded causal training blocks.

    Anything else (a padding mask, dropout, a sliding window, a KV cache's unequal lengths, soft-capping)
    goes to transformers' "sdpa" function, which shares this name's mask format.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        attention_mask is None
        and dropout == 0.0
        and getattr(module, "is_causal", True)
        and query.shape[2] == key.shape[2]
        and query.shape[1] % key.shape[1] == 0
        and kwargs.get("sliding_window") is None
        and kwargs.get("softcap") is None
    )
    if not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    dtype = _compute_dtype(query.device, query.dtype)
    with torch.autocast(query.device.type, enabled=False):
        return _ShortCausalAttention.apply(query, key, value, scale, dtype), None


def _register_short_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(SHORT_ATTENTION, short_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SHORT_ATTENTION, sdpa_mask)


def attention_implementation(device: torch.device, block_size: int, default: str, precision: str,
                             settings: SpeedSettings | None = None) -> str:
    """The transformers attn_implementation to train with on this device, block size and precision."""
    if (lever_applies("short_attention", precision, settings) and device.type == "cpu"
            and block_size <= SHORT_ATTENTION_MAX_TOKENS):
        _register_short_attention()
        return SHORT_ATTENTION
    return default


# ------------------------------------------------------------------------------------------ compile


def should_compile(device: torch.device, training_flops: float, precision: str,
                   settings: SpeedSettings | None = None) -> bool:
    """Compile when the lever is on, the run is long enough, and inductor has what it needs here."""
    min_flops = COMPILE_MIN_FLOPS if settings is None else settings.min_flops()
    if not lever_applies("compile", precision, settings) or training_flops < min_flops:
        return False
    if device.type == "cpu":
        from torch._inductor import config

        return shutil.which(config.cpp.cxx[-1] or "g++") is not None  # inductor builds C++ kernels
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return False


def compile_decoder_layers(model) -> list[torch.nn.Module]:
    """torch.compile the forward of every decoder layer; returns the layers ([] where none are found).

    Each compiled forward is bound to its own layer: call `uncompile` before copying or saving the model.
    """
    layers = getattr(_causal_lm(model).get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        return []
    for layer in layers:
        layer.forward = torch.compile(layer.forward, dynamic=False)
    return list(layers)


def uncompile(layers: list[torch.nn.Module]) -> None:
    """Undo compile_decoder_layers, so the returned model runs (and is merged, saved) as it came."""
    for layer in layers:
        del layer.forward  # the instance attribute; the class's forward shows through again


def eager_mode():
    """Run compiled modules uncompiled inside this context (validation: no second compile for no_grad)."""
    return torch.compiler.set_stance("force_eager")


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
