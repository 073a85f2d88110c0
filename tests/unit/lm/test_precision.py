"""`precision: auto` measures bf16 against fp32 on CPU, keeps the faster, and caches that per machine."""

import pytest
import torch

from transferlm.lm import cpu_probe as precision
from transferlm.lm import device as device_mod
from transferlm.lm.device import precision_decision, resolve_precision, resolve_precision_decision

CPU = torch.device("cpu")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A machine whose CPU claims bf16, an empty cache, and a probe timer that returns set timings."""
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(device_mod, "bf16_supported", lambda device: True)
    timings = {"bf16": 1.0, "fp32": 1.0, "calls": 0}

    def timer(dtype, seconds, **shapes):
        timings["calls"] += 1
        return timings["bf16" if dtype == torch.bfloat16 else "fp32"]

    monkeypatch.setattr(precision, "time_linear_step", timer)
    return timings


@pytest.mark.parametrize("bf16, fp32, expected", [(0.01, 0.03, "bf16"), (0.03, 0.01, "fp32")])
def test_auto_picks_the_faster_of_two_timings(fake, bf16, fp32, expected):
    fake.update(bf16=bf16, fp32=fp32)
    assert (record := resolve_precision_decision("auto", CPU))["precision"] == expected
    assert record["precision"] == expected and record["source"] == "probe"
    assert record["bf16_seconds"] == bf16 and record["fp32_seconds"] == fp32
    assert expected in record["reason"] or "slower" in record["reason"]


def test_bf16_must_win_by_the_margin(fake):
    fake.update(bf16=1.0, fp32=1.05)  # 5% faster: not worth leaving the exact path for
    assert resolve_precision("auto", CPU) == "fp32"


@pytest.mark.parametrize("forced", ["bf16", "fp32"])
def test_a_forced_precision_wins_without_probing(fake, forced):
    fake.update(bf16=0.01, fp32=0.03) if forced == "fp32" else fake.update(bf16=0.03, fp32=0.01)
    record = precision_decision(forced, CPU)
    assert record["precision"] == forced and record["source"] == "forced"
    assert fake["calls"] == 0


def test_the_answer_is_cached_and_reused(fake):
    fake.update(bf16=0.03, fp32=0.01)
    assert resolve_precision("auto", CPU) == "fp32"
    calls = fake["calls"]
    fake.update(bf16=0.01, fp32=0.03)  # a second run would now measure bf16 faster, but must not measure
    assert (record := resolve_precision_decision("auto", CPU))["precision"] == "fp32"
    assert fake["calls"] == calls and record["source"] == "cache"
    assert precision.cache_file().is_file()


@pytest.mark.parametrize("change", ["torch", "cpu", "shapes", "onednn_isa", "cpu_flags"])
def test_the_cache_is_keyed_by_torch_version_cpu_kernels_and_shapes(fake, monkeypatch, change):
    fake.update(bf16=0.03, fp32=0.01)
    assert resolve_precision("auto", CPU) == "fp32"
    fake.update(bf16=0.01, fp32=0.03)
    shapes = {}
    if change == "torch":
        monkeypatch.setattr(torch, "__version__", "9.9.9")
    elif change == "cpu":
        monkeypatch.setattr(precision, "cpu_model", lambda: "Some Other CPU")
    elif change == "onednn_isa":  # bf16 kept off AMX: a different answer on the same CPU
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    elif change == "cpu_flags":  # same model name, other flags (a hypervisor's generic CPU name)
        real = precision.kernel_settings()
        monkeypatch.setattr(precision, "kernel_settings", lambda: {**real, "bf16_flags": "something else"})
    else:
        shapes = {"hidden_size": 64, "intermediate_size": 128, "tokens": 32}
    assert (record := resolve_precision_decision("auto", CPU, **shapes))["precision"] == "bf16"
    assert record["source"] == "probe"


def test_cuda_takes_bf16_where_supported_and_no_bf16_means_fp32(fake, monkeypatch):
    assert precision_decision("auto", torch.device("cuda"))["precision"] == "bf16"
    monkeypatch.setattr(device_mod, "bf16_supported", lambda device: False)
    assert precision_decision("auto", torch.device("cuda"))["precision"] == "fp32"
    assert precision_decision("auto", CPU)["source"] == "no-bf16"
    assert fake["calls"] == 0


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError):
        resolve_precision("fp16", CPU)


def test_the_real_probe_times_both_precisions(monkeypatch, tmp_path):
    """The real timer on tiny shapes: a well-formed record, whichever precision wins on this CPU."""
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "PROBE_SECONDS", 0.05)
    record = precision.cpu_choice({"hidden_size": 32, "intermediate_size": 64, "tokens": 16})
    assert record["precision"] in ("bf16", "fp32")
    assert record["bf16_seconds"] > 0 and record["fp32_seconds"] > 0
    assert precision.cpu_model() in record["key"] and torch.__version__ in record["key"]
