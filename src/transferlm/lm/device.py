"""Where to run and in which precision: one place for the CPU/CUDA and bf16/fp32 decisions."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matmuls run natively (CUDA Ampere+; CPUs with AVX-512 BF16 or AMX).

    Supported is not the same as fast: on CPU, `precision: auto` measures (transferlm.lm.cpu_probe).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def precision_decision(precision: str, device: torch.device, *, hidden_size: int | None = None,
                       intermediate_size: int | None = None, tokens: int | None = None) -> dict:
    """The precision to train in, with how it was decided: a record for the run's metrics.

    Keys: precision (bf16 | fp32), requested, device, source (forced | cuda | no-bf16 | probe | cache),
    reason; after a CPU probe also bf16_seconds, fp32_seconds, bf16_gflops, fp32_gflops, shapes, key.
    The shapes (the model's hidden and MLP widths, tokens per micro-batch) size the CPU probe.
    """
    record = {"requested": precision, "device": device.type}
    if precision in ("bf16", "fp32"):
        if precision == "bf16" and not bf16_supported(device):
            log.warning("precision bf16 requested but %s has no native bf16: expect it to be slow", device)
        record.update(precision=precision, source="forced", reason=f"precision: {precision} in params")
    elif precision != "auto":
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    elif not bf16_supported(device):
        record.update(precision="fp32", source="no-bf16", reason=f"{device.type} has no native bf16")
    elif device.type != "cpu":
        record.update(precision="bf16", source=device.type, reason=f"{device.type} supports bf16")
    else:
        from transferlm.lm.cpu_probe import cpu_choice

        shapes = {k: v for k, v in (("hidden_size", hidden_size), ("intermediate_size", intermediate_size),
                                    ("tokens", tokens)) if v}
        record.update(cpu_choice(shapes))
    return record


def resolve_precision_decision(precision: str, device: torch.device, **shapes) -> dict:
    """resolve_precision's whole decision: the precision_decision record (its "precision" is the answer),
    logged as resolve_precision logs it. For callers that keep the record (a run's metrics, zeroshot.json)."""
    record = precision_decision(precision, device, **shapes)
    if record["source"] in ("probe", "cache"):
        log.info("precision auto -> %s: %s (%s)", record["precision"], record["reason"],
                 "measured now" if record["source"] == "probe" else f"cached in {record['cache_file']}")
    return record


def resolve_precision(precision: str, device: torch.device, **shapes) -> str:
    """Turn the `precision` param (auto | bf16 | fp32) into bf16 or fp32 for this device.

    auto: bf16 on GPUs that support it; on CPU the faster of the two as measured here (see
    transferlm.lm.cpu_probe). `shapes`: hidden_size, intermediate_size, tokens (see precision_decision).
    The record of how it was decided: resolve_precision_decision.
    """
    return resolve_precision_decision(precision, device, **shapes)["precision"]


def autocast(device: torch.device, precision: str):
    """bf16 autocast on either device type, or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
