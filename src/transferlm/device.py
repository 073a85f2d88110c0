"""Where to run and in which precision: one place for the CPU/CUDA and bf16/fp32 decisions."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 matmuls run natively (CUDA Ampere+; CPUs with AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn the `precision` param (auto | bf16 | fp32) into bf16 or fp32 for this device."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        log.warning("precision bf16 requested but %s has no native bf16: expect it to be slow", device)
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast on either device type, or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
