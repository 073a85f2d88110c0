"""`precision: auto` on CPU: time bf16 against fp32 on this machine, and remember the answer.

The CPU flag `avx512_bf16` says bf16 matmuls are supported, not that they are fast: on one 2-core AMD
EPYC bf16 ran at 4x the fp32 rate, on an Intel Xeon of the same machine kind at half of it (figures
in docs/performance.md). So `auto` times both, on matmuls shaped like one linear layer of the model's
training step (forward, input gradient, weight gradient, plus the weight cast autocast adds), and keeps
the faster. The answer is cached in the user cache dir, keyed by what it depends on (CPU model and
bf16 flags, kernel-steering environment variables, cores, torch threads, torch version, shapes), so
each machine probes once (about a second) and every later run reuses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PROBE_VERSION = 1  # bump when the probe changes, so old cached answers are not reused
# bf16 must beat fp32 by this factor: fp32 is the exact path, and the probe leaves out the activation
# casts autocast adds around every op, which a real bf16 step pays on top.
BF16_MARGIN = 1.1
PROBE_SECONDS = 0.6  # time spent on each precision, at most (after one warm-up round)
MAX_ROUNDS = 50

# Shapes when the caller passes none: one MLP projection of SmolLM2-135M, batch 8 x 128 tokens.
DEFAULT_SHAPES = {"hidden_size": 576, "intermediate_size": 1536, "tokens": 1024}


def cache_file() -> Path:
    from transferlm.core.paths import cache_dir

    return cache_dir() / "precision_probe.json"


def _cpuinfo(field: str) -> str | None:
    """The first CPU's `field` in /proc/cpuinfo ("model name", "flags"), or None where there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(field):
                return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it (platform.processor() is often just the arch)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


# Environment variables that change which matmul kernels run: oneDNN's ISA cap (e.g. AVX512_CORE_BF16
# keeps bf16 off AMX, which on the AMX Xeon made bf16 2x slower than fp32), ATen's vector ISA, MKL's.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
# CPU flags that bf16 speed hangs on. Under a hypervisor the model name can be a generic "Intel(R) Xeon(R)
# Processor" shared by CPUs with and without AMX, so the flags go into the key as well.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def kernel_settings() -> dict[str, str]:
    """The bf16-relevant CPU flags present and the kernel-steering variables set: what the probe ran on."""
    flags = set((_cpuinfo("flags") or "").split())
    settings = {"bf16_flags": " ".join(f for f in BF16_FLAGS if f in flags) or "none"}
    settings.update({name: os.environ[name] for name in KERNEL_ENV if os.environ.get(name)})
    return settings


def machine_key(shapes: dict) -> str:
    """What the answer depends on: which CPU and kernels, how many cores and threads, which torch and shapes."""
    parts = [f"v{PROBE_VERSION}", cpu_model(), f"{os.cpu_count()} cores", f"{torch.get_num_threads()} threads",
             f"torch {torch.__version__}"]
    parts += [f"{k}={v}" for k, v in kernel_settings().items()]
    parts += [f"{k}={shapes[k]}" for k in sorted(shapes)]
    return " | ".join(parts)


def time_linear_step(dtype: torch.dtype, hidden_size: int, intermediate_size: int, tokens: int,
                     seconds: float = PROBE_SECONDS) -> float:
    """Best time of one linear layer's training matmuls in `dtype`: y = x W^T, dx = dy W, dW = dy^T x."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(intermediate_size, hidden_size, generator=generator)  # fp32 master, as in training
    x = torch.randn(tokens, hidden_size, generator=generator).to(dtype)
    grad_y = torch.randn(tokens, intermediate_size, generator=generator).to(dtype)

    def one_round() -> float:
        t0 = time.perf_counter()
        w = weight.to(dtype)  # autocast casts each fp32 weight once per step; a no-op for fp32
        x @ w.T
        grad_y @ w
        grad_y.T @ x
        return time.perf_counter() - t0

    one_round()  # warm-up: first calls pick kernels and allocate
    best, spent, rounds = float("inf"), 0.0, 0
    while rounds < MAX_ROUNDS and spent < seconds:
        elapsed = one_round()
        best, spent, rounds = min(best, elapsed), spent + elapsed, rounds + 1
    return best


def decide(bf16_seconds: float, fp32_seconds: float) -> tuple[str, str]:
    """The precision to train in, given the probe's two timings, and why."""
    ratio = fp32_seconds / bf16_seconds
    if ratio >= BF16_MARGIN:
        return "bf16", f"bf16 matmuls measured {ratio:.2f}x as fast as fp32 here"
    if ratio >= 1.0:
        return "fp32", f"bf16 measured only {ratio:.2f}x as fast as fp32 here (needs {BF16_MARGIN}x): fp32"
    return "fp32", f"bf16 matmuls measured {1 / ratio:.2f}x slower than fp32 here"


def probe(shapes: dict, timer=None) -> dict:
    """Time both precisions on these shapes; the record of what was measured and chosen."""
    timer = timer or time_linear_step
    # Interleaved halves, so a burst of load from another process does not land on one precision only.
    bf16 = fp32 = float("inf")
    for _ in range(2):
        bf16 = min(bf16, timer(torch.bfloat16, seconds=PROBE_SECONDS / 2, **shapes))
        fp32 = min(fp32, timer(torch.float32, seconds=PROBE_SECONDS / 2, **shapes))
    choice, reason = decide(bf16, fp32)
    flops = 3 * 2 * shapes["tokens"] * shapes["hidden_size"] * shapes["intermediate_size"]
    return {
        "precision": choice,
        "reason": reason,
        "bf16_seconds": bf16,
        "fp32_seconds": fp32,
        "bf16_gflops": round(flops / bf16 / 1e9, 1),
        "fp32_gflops": round(flops / fp32 / 1e9, 1),
        "shapes": dict(shapes),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside the cache file: under `accelerate launch` the first process probes while
    the others wait (not competing for the same cores), then they read its answer and agree with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, each process probes (the answer is still cached)
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cpu_choice(shapes: dict | None = None, timer=None) -> dict:
    """The probe's record for this machine and shapes: from the cache, else measured now and cached."""
    shapes = {**DEFAULT_SHAPES, **(shapes or {})}
    key = machine_key(shapes)
    path = cache_file()
    with _locked(path):
        cached = _read(path).get(key)
        if isinstance(cached, dict) and cached.get("precision") in ("bf16", "fp32"):
            return {**cached, "source": "cache", "key": key, "cache_file": str(path)}
        record = probe(shapes, timer)
        entries = _read(path)
        entries[key] = record
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    return {**record, "source": "probe", "key": key, "cache_file": str(path)}
