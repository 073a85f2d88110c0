"""Training throughput: Hugging Face Trainer baselines against this project's training loop, side by side.

    python bench/train_throughput.py [--base models/base] [--data data/tokenized] [--batch-size 8]

Each variant runs in a fresh subprocess (so its peak RSS is its own): warm-up steps, then timed steps,
timed from the end of the last warm-up step to the end of the last timed step (data loading included).

  trainer_fp32  transformers.Trainer as run_clm.py sets it up on CPU: fp32, its default AdamW, use_cpu
  trainer_bf16  the same with bf16=True
  transferlm    this project's training loop (training.loop) with its defaults (the real code, timed from its curves;
                `precision: auto` measures bf16 against fp32 on this CPU and takes the faster)
  ...           the same forced to bf16 or fp32, with one speed lever off, or with LoRA (see VARIANTS)

The lever variants run at --lever-precision (default auto: the path the defaults take on this machine),
so each machine's table says what each lever is worth on the path it actually trains in.
It also measures the machine's matmul peak (square bf16/fp32 matmuls from 512 up to 4096, the best of
several) and reports MFU = tokens/s x model FLOPs per token / the matmul peak of the precision that
variant ran in, with FLOPs per token = 6N + 12*L*d*T (transferlm.training.optim.flops_per_token). On CPU, the
transferlm variants compile their decoder layers only if the default fine-tune's budget would (the
TrainParams defaults: at the default budget it does not; warmup_seconds shows the one-off cost
where it does).
Results: a table on stdout and metrics/bench_train.json. Without --data (or if it does not exist) the
blocks are random token ids from the model's vocabulary (seeded): speed does not depend on the text.
Runs on CUDA when present (MFU against that GPU's measured peak).

Time boxes, so that it ends on any CPU in under 15 minutes and says what it is doing as it goes (a line
on stderr before every measurement): the matmul peak grows its size only while the next size fits in
--peak-seconds, and so does the timing of the model's matmuls; on CPU, a precision whose variants the
precision probe's matmul rate says cannot finish within --variant-timeout is skipped; every variant is
killed at its deadline (--variant-timeout, or what is left of --time-box) and reported as timed out;
variants that no longer fit in --time-box are skipped. The table and the JSON's `not_run` say which and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from bench_report import build_report, print_table, write_report

from transferlm.lm.cpu_probe import cpu_model, kernel_settings

ROOT = Path(__file__).resolve().parents[1]

# name -> how the child runs it. "levers_off" names transferlm.lm.speed.Levers fields switched off.
VARIANTS: dict[str, dict] = {
    "trainer_fp32": {"kind": "trainer", "bf16": False},
    "trainer_bf16": {"kind": "trainer", "bf16": True},
    "transferlm": {"kind": "transferlm", "precision": "auto"},
    "transferlm_bf16": {"kind": "transferlm", "precision": "bf16"},
    "transferlm_fp32": {"kind": "transferlm", "precision": "fp32"},
    "no_keep_freed_memory": {"kind": "transferlm", "levers_off": ["keep_freed_memory"]},
    "no_short_attention": {"kind": "transferlm", "levers_off": ["short_attention"]},
    "no_fused_optimizer": {"kind": "transferlm", "levers_off": ["fused_optimizer"]},
    "no_fused_loss": {"kind": "transferlm", "levers_off": ["fused_loss"]},
    "no_fused_layers": {"kind": "transferlm", "levers_off": ["fused_layers"]},
    "no_compile": {"kind": "transferlm", "levers_off": ["compile"]},
    "all_levers_off": {
        "kind": "transferlm",
        "levers_off": ["keep_freed_memory", "short_attention", "fused_optimizer", "fused_loss", "fused_layers",
                       "compile"],
    },
    "lora": {"kind": "transferlm", "method": "lora"},
}
# Goals of this loop against the better of the two Trainer settings, on whichever machine runs the bench.
GOALS = {"speedup_vs_best_trainer": 1.4, "mfu": 0.60}
# Time boxes (seconds; the CLI can change each). A 2-core CPU trains a variant of the default settings in
# 1-2 minutes; a Zen 3 CPU with AVX2 only runs bf16 matmuls at ~1 GFLOP/s, where one bf16 peak measurement
# of the old fixed sizes ran 11 minutes without a word and a bf16 variant took minutes a step.
TIME_BOX_S = 840  # the whole bench: under 15 minutes with the start-up and the report
VARIANT_TIMEOUT_S = 300
PEAK_SECONDS = 60  # each precision's square peak, and again each precision's model-matmul timing
MIN_VARIANT_S = 30  # a variant is not started in less of what is left of the time box
PEAK_SIZES = (512, 1024, 2048, 4096)
PRECISION_OF = {torch.bfloat16: "bf16", torch.float32: "fp32"}
FORMULA = "FLOPs/token = 6*N + 12*L*d*T (N parameters, L layers, d width, T block size); LoRA: 4*N + 8*L*d*T"


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line on stderr, at once: a slow measurement should not look like a hung one."""
    print(f"[bench {time.monotonic() - STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ peak


def best_matmul_seconds(rows: int, inner: int, cols: int, dtype: torch.dtype, reps: int) -> float:
    """Best-of-`reps` time of one [rows, inner] x [inner, cols] matmul, after one untimed."""
    dev = device()
    a = torch.randn(rows, inner, device=dev).to(dtype)
    b = torch.randn(inner, cols, device=dev).to(dtype)
    a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak_gflops(dtype: torch.dtype, size: int, reps: int) -> float:
    """Best-of-`reps` rate of one square matmul: what this machine's matmul units can do right now."""
    return 2 * size**3 / best_matmul_seconds(size, size, size, dtype, reps) / 1e9


def matmul_peak(dtype: torch.dtype, reps: int, box_s: float) -> dict:
    """The best square-matmul rate over PEAK_SIZES, from the smallest, while the next size fits in `box_s`.

    Each size has 8x the FLOPs of the one before, so at the rate just measured it takes about 8x as
    long: the next size is tried only if that still ends inside the box. The best of the sizes, because
    the larger peak makes the MFU against it the more conservative figure.
    """
    best, sizes, spent = 0.0, [], 0.0
    for size in PEAK_SIZES:
        say(f"matmul peak {PRECISION_OF[dtype]}: {size}^3 x {reps} ...")
        started = time.perf_counter()
        best = max(best, matmul_peak_gflops(dtype, size, reps))
        took = time.perf_counter() - started
        spent += took
        sizes.append(size)
        if spent + 8 * took > box_s:
            break
    say(f"matmul peak {PRECISION_OF[dtype]}: {best:.0f} GFLOP/s (sizes {sizes[0]}-{sizes[-1]})")
    return {"gflops": best, "sizes": sizes}


def model_matmuls(base: Path, tokens: int) -> list[tuple[int, int, int, int]]:
    """(count, rows, inner, cols) of every distinct weight matmul of a training step, see model_matmul_ceiling."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base, trust_remote_code=False)
    d, ff = config.hidden_size, config.intermediate_size
    kv = d // config.num_attention_heads * config.num_key_value_heads
    maps = Counter()  # [in, out] -> how many the model has
    for shape in [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]:  # q k v o gate up down
        maps[shape] += config.num_hidden_layers
    maps[(d, config.vocab_size)] += 1  # the head
    return [(count, rows, inner, cols) for (fan_in, fan_out), count in maps.items()
            for rows, inner, cols in ((tokens, fan_in, fan_out), (tokens, fan_out, fan_in), (fan_out, tokens, fan_in))]


def model_matmul_ceiling(base: Path, tokens: int, dtype: torch.dtype, peak_gflops: float, box_s: float,
                         reps: int = 3) -> tuple[float | None, str]:
    """The rate of the training step's own weight matmuls, timed alone: what MFU could reach at this size.

    For each linear map of the model ([in -> out], T = `tokens` per step) a step does three products:
    forward x @ W.T ([T, in] x [in, out]), backward to the input ([T, out] x [out, in]) and to the weight
    ([out, T] x [T, in]). Each is timed (best of `reps`) and weighted by how often the model has it; the
    ratio of their FLOPs to their time bounds a step's MFU before attention, norms or the optimizer.
    Returns (GFLOP/s, "") or, where timing them would overrun `box_s` by an estimate from `peak_gflops`,
    (None, why).
    """
    products = model_matmuls(base, tokens)
    # Each distinct product runs once untimed and `reps` times; the head's alone is 58 GFLOP per run. The
    # model's shapes ran at 28% of the square peak on the AMD EPYC with AVX2 kernels and 48% on the AMX
    # Xeon (bench/README.md), so the estimate assumes a quarter of it.
    cost = sum(2 * rows * inner * cols * (1 + reps) for _, rows, inner, cols in products) / (peak_gflops / 4 * 1e9)
    if cost > box_s:
        return None, f"timing them would take about {cost:.0f} s at a quarter of the peak, over the {box_s:g} s box"
    say(f"the model's matmuls timed alone, {PRECISION_OF[dtype]} (about {cost:.0f} s) ...")
    flops = seconds = 0.0
    for count, rows, inner, cols in products:
        flops += count * 2 * rows * inner * cols
        seconds += count * best_matmul_seconds(rows, inner, cols, dtype, reps)
    return flops / seconds / 1e9, ""


def slow_precisions(probe: dict, step_flops: float, steps: int, deadline_s: float) -> dict[str, str]:
    """Precisions whose variants cannot end by their deadline at the rate the precision probe measured.

    The probe times one linear layer's training matmuls in each precision (transferlm.lm.cpu_probe); a
    step also does attention, norms and the optimizer, so `steps` steps of `step_flops` at that rate is
    the least a variant takes. Where that alone overruns the deadline the precision is skipped: its
    variants would only sit out the deadline. A ratio alone would not do: on the AMX Xeon fp32 is 5x
    slower than bf16 and still trains a variant in about a minute.
    """
    skipped = {}
    for precision, other in (("bf16", "fp32"), ("fp32", "bf16")):
        rate, other_rate = probe[f"{precision}_gflops"], probe[f"{other}_gflops"]
        least = steps * step_flops / (rate * 1e9)
        if least > deadline_s:
            ratio = f"{other_rate / rate:.1f}x slower" if other_rate > rate else f"{rate / other_rate:.1f}x as fast"
            skipped[precision] = (
                f"the precision probe measured {precision} matmuls at {rate:g} GFLOP/s against {other}'s "
                f"{other_rate:g} ({ratio}): {steps} steps would take at least {least:.0f} s, over the "
                f"{deadline_s:g} s deadline")
    return skipped


# ---------------------------------------------------------------------------------------- children


def random_blocks_dir(base: Path, n_blocks: int, block_size: int, out: Path) -> Path:
    """A data/tokenized-style DatasetDict of random token ids (seeded), for runs without a corpus."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(base, trust_remote_code=False).vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n_blocks + 16, block_size), generator=generator).tolist()
    DatasetDict(
        {"train": Dataset.from_dict({"input_ids": ids[:n_blocks]}),
         "validation": Dataset.from_dict({"input_ids": ids[n_blocks:]})}
    ).save_to_disk(str(out))
    return out


def run_trainer(spec: dict, args, work: Path) -> list[float]:
    """HF Trainer as run_clm.py configures it (labels = input_ids, default collator).

    Returns the end time of every step, in seconds since training began.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments, default_data_collator

    from transferlm.lm.blocks import load_split

    blocks = load_split(args.data, "train")
    dataset = Dataset.from_dict({"input_ids": blocks.tolist(), "labels": blocks.tolist()})
    model = AutoModelForCausalLM.from_pretrained(args.base, trust_remote_code=False)
    ends: list[float] = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            sync()
            ends.append(time.perf_counter() - self.t0)

    training_args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-4,
        bf16=spec["bf16"],
        use_cpu=device().type == "cpu",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset,
                      data_collator=default_data_collator, callbacks=[StepTimer()])
    trainer.train()
    print(f"trainer optimizer: {training_args.optim}", file=sys.stderr)
    return ends


def run_transferlm(spec: dict, args, work: Path) -> list[float]:
    """This project's training loop; step end times (seconds since its loop began) from its loss curve."""
    from transferlm.core.params import TrainParams
    from transferlm.lm import blocks as data
    from transferlm.lm import speed
    from transferlm.training.loop import Run, train

    settings = dict(
        method=spec.get("method", "full"),
        precision=spec.get("precision", args.lever_precision),
        batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        warmup_steps=1,
        eval_every=10**6,  # only the held-out losses before and after, both outside the timed steps
        save_every=0,
        optimizer="adamw",
        lr=1e-4,
    )
    known = {f.name for f in dataclasses.fields(TrainParams)}
    cfg = TrainParams(**{key: value for key, value in settings.items() if key in known})
    cfg.validate()
    # Compile (or not) as the default fine-tune would: this short run alone would never reach the budget.
    # train() still asks should_compile, so the lever, the precision's path and the compiler are checked there.
    figures = model_figures(args.base, args.block_size)
    per_token = figures["flops_per_token" if cfg.method == "full" else "flops_per_token_lora"]
    default = TrainParams()
    default_compiles = default.max_steps * default.batch_size * args.block_size * per_token >= speed.COMPILE_MIN_FLOPS
    run_speed = speed.SpeedSettings(levers=speed.Levers(**dict.fromkeys(spec.get("levers_off", []), False)),
                                    compile_min_flops=0.0 if default_compiles else None)
    heldout = data.heldout_blocks(args.data, args.batch_size, 0)
    _, result = train(Run(spec["name"], cfg), data_dir=args.data, base_dir=args.base, heldout=heldout,
                      speed=run_speed)
    spec["precision_used"] = result.metrics["precision"]
    spec["precision_reason"] = result.metrics["precision_choice"].get("reason", "")
    return [row["seconds"] for row in result.train_curve]


def child(name: str, args) -> dict:
    spec = {"name": name, **VARIANTS[name]}
    with tempfile.TemporaryDirectory() as tmp:
        run = run_trainer if spec["kind"] == "trainer" else run_transferlm
        ends = run(spec, args, Path(tmp))
    precision = spec.get("precision_used") or ("bf16" if spec.get("bf16") else "fp32")
    timed = ends[args.warmup - 1 :]
    seconds = timed[-1] - timed[0]
    steps = len(timed) - 1
    step_times = [b - a for a, b in zip(timed[:-1], timed[1:], strict=True)]
    result = {
        "tokens_per_s": round(steps * args.batch_size * args.block_size / seconds, 1),
        "step_seconds": round(seconds / steps, 4),
        "step_seconds_min": round(min(step_times), 4),
        "step_seconds_max": round(max(step_times), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "warmup_seconds": round(ends[args.warmup - 1], 2),  # first steps: one-off costs such as compiling
        "precision": precision,
    }
    if spec.get("precision_reason"):
        result["precision_reason"] = spec["precision_reason"]
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


# ------------------------------------------------------------------------------------------ parent


def model_figures(base: Path, block_size: int) -> dict:
    from transformers import AutoConfig

    from transferlm.training.optim import flops_per_token

    config = AutoConfig.from_pretrained(base, trust_remote_code=False)
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    return {
        "parameters": n_params,
        "flops_per_token": flops_per_token(config, block_size, n_params),
        "flops_per_token_lora": flops_per_token(config, block_size, n_params, full_backward=False),
    }


def child_command(name: str, args) -> list[str]:
    return [sys.executable, __file__, "--child", name, "--base", str(args.base), "--data", str(args.data),
            "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps),
            "--block-size", str(args.block_size), "--lever-precision", args.lever_precision]


def run_with_deadline(command: list[str], deadline_s: float) -> tuple[int | None, str, str]:
    """(exit status, stdout, stderr) of `command`; the status is None where it ran past `deadline_s`.

    The command runs in a process group of its own, and at the deadline the whole group is killed:
    a variant's worker processes (the compiler's, for one) must not outlive it on the bench's cores.
    """
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=deadline_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    except BaseException:  # Ctrl-C reaches only the bench's own group: take the variant down with it
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def run_variant(name: str, command: list[str], deadline_s: float) -> dict:
    """The variant's figures, or {"status": "timed_out" | "failed", "reason": ...} where it gave none."""
    say(f"running {name} (deadline {deadline_s:.0f} s) ...")
    started = time.monotonic()
    code, out, err = run_with_deadline(command, deadline_s)
    if code is None:
        say(f"{name}: timed out after {deadline_s:.0f} s")
        return {"status": "timed_out", "reason": f"timed out after {deadline_s:.0f} s"}
    if code != 0:
        print(err[-3000:], file=sys.stderr)
        last = (err.strip().splitlines() or ["no output"])[-1]
        say(f"{name}: failed (exit status {code})")
        return {"status": "failed", "reason": f"exit status {code}: {last[:300]}"}
    row = json.loads(out.strip().splitlines()[-1])
    say(f"{name}: {row['tokens_per_s']:.0f} tokens/s, {row['precision']} ({time.monotonic() - started:.0f} s)")
    return row


def variant_precision(spec: dict, lever_precision: str, auto_choice: str) -> str:
    """The precision a variant will train in: its own, the lever rows', or what `auto` picks here."""
    if spec["kind"] == "trainer":
        return "bf16" if spec["bf16"] else "fp32"
    precision = spec.get("precision", lever_precision)
    return auto_choice if precision == "auto" else precision


def median_round(runs: list[dict]) -> dict:
    """The run with the median tokens/s (the lower middle one of an even count), listing every round's."""
    ranked = sorted(runs, key=lambda run: run["tokens_per_s"])
    row = dict(ranked[(len(ranked) - 1) // 2])
    if len(runs) > 1:
        row["tokens_per_s_rounds"] = [run["tokens_per_s"] for run in runs]
        row["peak_rss_mb_rounds"] = [run["peak_rss_mb"] for run in runs]
    return row


def cpu_idle_share(seconds: float = 2.0) -> float:
    """Share of all CPUs idle over a short window: how busy other processes keep the machine."""
    def snapshot():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)

    idle0, total0 = snapshot()
    time.sleep(seconds)
    idle1, total1 = snapshot()
    return (idle1 - idle0) / max(total1 - total0, 1)


def probe_shapes(base: Path, tokens: int) -> dict:
    """The precision probe's shapes for this model and batch, as the training loop passes them."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base, trust_remote_code=False)
    return {"hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--data", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=128, help="only used for random blocks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--lever-precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="precision of the transferlm variants that set none (the lever rows)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the variant list this many times in turn (A B C A B C ...); each row is "
                             "its median round, with every round's tokens/s: drift hits all rows alike")
    parser.add_argument("--time-box", type=float, default=TIME_BOX_S,
                        help="seconds for the whole bench; variants that no longer fit are skipped (%(default)s; "
                             "raise it for --rounds)")
    parser.add_argument("--variant-timeout", type=float, default=VARIANT_TIMEOUT_S,
                        help="a variant still running after this many seconds is killed, reported as timed out "
                             "(%(default)s)")
    parser.add_argument("--peak-seconds", type=float, default=PEAK_SECONDS,
                        help="time box of each precision's matmul peak and of its model-matmul timing (%(default)s)")
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_train.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(ROOT)

    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variants: {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if not (args.base / "config.json").is_file():
        sys.exit(f"{args.base}: no model (run the fetch stage first, or pass --base)")
    say(f"time box {args.time_box:g} s, {args.variant_timeout:g} s a variant, {args.peak_seconds:g} s a peak")

    with tempfile.TemporaryDirectory() as tmp:
        if (args.data / "dataset_dict.json").is_file():
            from transferlm.lm.blocks import load_split

            args.block_size = load_split(args.data, "validation").shape[1]
            data_source = str(args.data)
        else:
            say(f"{args.data}: not found; using random token blocks")
            n_blocks = args.batch_size * (args.warmup + args.steps)
            args.data = random_blocks_dir(args.base, n_blocks, args.block_size, Path(tmp) / "tokenized")
            data_source = "random token ids"

        say("how idle the CPUs are (2 s) ...")
        idle_before, load_before = cpu_idle_share(), os.getloadavg()
        tokens = args.batch_size * args.block_size
        figures = {**model_figures(args.base, args.block_size), "flops_formula": FORMULA}
        auto_choice, skipped = "bf16", {}
        if device().type == "cpu":
            from transferlm.lm.cpu_probe import cpu_choice
            from transferlm.lm.device import precision_decision

            # Probed even where the CPU has no bf16 flag (and `auto` takes fp32 without asking): a bf16
            # variant forced on such a CPU is what can take minutes a step.
            say("precision probe: bf16 against fp32 on one linear layer of the model's step ...")
            shapes = probe_shapes(args.base, tokens)
            probe = cpu_choice(shapes)
            auto_choice = precision_decision("auto", torch.device("cpu"), **shapes)["precision"]
            say(f"precision probe ({probe['source']}): bf16 {probe['bf16_gflops']:g} GFLOP/s, "
                f"fp32 {probe['fp32_gflops']:g}; auto trains in {auto_choice} here")
            # The least FLOPs any variant does a step (LoRA's), so "at least" holds for every row skipped.
            skipped = slow_precisions(probe, figures["flops_per_token_lora"] * tokens, args.warmup + args.steps,
                                      args.variant_timeout)
            for precision, reason in skipped.items():
                say(f"skipping {precision}: {reason}")
            figures["precision_probe"] = {key: probe[key] for key in
                                          ("precision", "reason", "bf16_gflops", "fp32_gflops", "source")}
        peaks, ceilings = {}, {}
        figures.update(matmul_peak_sizes={}, model_matmul_ceiling_skipped={}, skipped_precisions=skipped)
        for precision, dtype, reps in (("bf16", torch.bfloat16, 5), ("fp32", torch.float32, 3)):
            peak = matmul_peak(dtype, reps, args.peak_seconds)
            peaks[precision], figures["matmul_peak_sizes"][precision] = peak["gflops"], peak["sizes"]
            if precision in skipped:
                ceiling, why = None, "its precision is skipped"
            else:
                ceiling, why = model_matmul_ceiling(args.base, tokens, dtype, peaks[precision], args.peak_seconds)
            if ceiling is None:
                figures["model_matmul_ceiling_skipped"][precision] = why
                say(f"the model's matmuls, {precision}: not timed, {why}")
            else:
                ceilings[precision] = round(ceiling, 1)
        figures["model_matmul_ceiling_gflops"] = ceilings
        settings = {"batch_size": args.batch_size, "block_size": args.block_size, "warmup_steps": args.warmup,
                    "timed_steps": args.steps, "data": data_source, "base": str(args.base),
                    "lever_precision": args.lever_precision, "rounds": args.rounds, "time_box_s": args.time_box,
                    "variant_timeout_s": args.variant_timeout, "peak_seconds": args.peak_seconds}
        machine = {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_model(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            **({} if torch.cuda.is_available() else kernel_settings()),
            "cpu_idle_before": round(idle_before, 2), "loadavg_before": [round(x, 2) for x in load_before],
        }
        results: dict[str, dict] = {}
        not_run: dict[str, dict] = {}  # name -> status (skipped | timed_out | failed), reason, precision
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for round_number in range(1, args.rounds + 1):
            for name in names:
                if name in not_run:  # what timed out or failed once would only do it again
                    continue
                precision = variant_precision(VARIANTS[name], args.lever_precision, auto_choice)
                left = args.time_box - (time.monotonic() - STARTED)
                if precision in skipped:
                    row = {"status": "skipped", "reason": skipped[precision]}
                elif left < min(args.variant_timeout, MIN_VARIANT_S):
                    spent = f"the bench's time box of {args.time_box:g} s was spent ({max(left, 0):.0f} s left)"
                    row = {"status": "skipped", "reason": spent}
                else:
                    row = run_variant(name, child_command(name, args), min(args.variant_timeout, left))
                if "status" in row:
                    if row["status"] == "skipped":
                        say(f"skipping {name}: {row['reason']}")
                    not_run[name] = {**row, "precision": precision}
                    if args.rounds > 1:
                        not_run[name]["round"] = round_number
                else:
                    rounds[name].append(row)
                    results[name] = median_round(rounds[name])
                # Written after every variant: a long run cut short still leaves what it measured.
                write_report(args.out, build_report(results, peaks, figures, settings, machine, VARIANTS, GOALS,
                                                    not_run))
        machine.update(cpu_idle_after=round(cpu_idle_share(), 2),
                       loadavg_after=[round(x, 2) for x in os.getloadavg()])

    report = build_report(results, peaks, figures, settings, machine, VARIANTS, GOALS, not_run)
    write_report(args.out, report)
    print_table(report, FORMULA)
    failed = [name for name, row in not_run.items() if row["status"] == "failed"]
    if failed:
        sys.exit(f"variants failed: {', '.join(failed)} (see above)")


if __name__ == "__main__":
    main()
