"""One speed lever on and off, alternated step by step on one model in one process.

    python bench/lever_ab.py --lever fused_layers [--pairs 30] [--precision bf16] [--base models/base]

The throughput bench runs each variant in its own process, minutes apart; on a machine whose speed drifts
(bench/README.md) its rows can differ by more than a lever is worth. Here both settings share the model,
the batch and the minute: each pair times one training step with the lever on and one with it off (the
order alternating from pair to pair), and the figure is the median of the pairs' ratios, with quartiles.
A step is what transferlm.training.loop does: bf16 autocast (or fp32), the causal-LM loss, backward, fused AdamW.

Levers that can be switched between steps: fused_layers, fused_loss, short_attention (keep_freed_memory
changes the allocator for good, and compile has a one-off cost; their rows in train_throughput.py stand).
Prints its figures; the blocks are seeded random token ids (step time does not depend on the text).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from transferlm.lm import models, speed
from transferlm.lm.cpu_probe import cpu_model
from transferlm.lm.device import autocast
from transferlm.training.optim import build_optimizer

LEVERS = ("fused_layers", "fused_loss", "short_attention")


@contextmanager
def levers(model, off: str | None, tuned_attention: str):
    """The training step's levers, all on but `off`; yields the loss function; restores the model after."""
    fused = [] if off == "fused_layers" else speed.fuse_layers(model)
    model.set_attn_implementation("sdpa" if off == "short_attention" else tuned_attention)
    try:
        yield speed.CausalLMLoss(model, fused=off != "fused_loss")
    finally:
        speed.unfuse(fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lever", required=True, choices=LEVERS)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2, help="untimed pairs first")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=128)
    args = parser.parse_args()
    if not (args.base / "config.json").is_file():
        sys.exit(f"{args.base}: no model (run the fetch stage first, or pass --base)")

    speed.keep_freed_memory()  # on by default in training: measure the others on top of it
    device = torch.device("cpu")
    model = models.load_pretrained(args.base).train()
    model.config.use_cache = False
    optimizer = build_optimizer("adamw", model, 1e-5, 0.0)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model.config.vocab_size, (args.batch_size, args.block_size), generator=generator)

    # Registers the short attention and says whether this device, block size and precision would use it.
    tuned_attention = speed.attention_implementation(device, args.block_size, "sdpa", args.precision)

    def step(on: bool) -> float:
        with levers(model, None if on else args.lever, tuned_attention) as loss_of:
            start = time.perf_counter()
            with autocast(device, args.precision):
                loss = loss_of(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return time.perf_counter() - start

    on_times, off_times, ratios = [], [], []
    for pair in range(args.warmup + args.pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        seconds = {on: step(on) for on in order}
        if pair >= args.warmup:
            on_times.append(seconds[True])
            off_times.append(seconds[False])
            ratios.append(seconds[True] / seconds[False])

    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    tokens = args.batch_size * args.block_size
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.precision}, "
          f"batch {args.batch_size} x {args.block_size}, {args.pairs} pairs")
    print(f"{args.lever} on : median step {statistics.median(on_times):.3f} s "
          f"({tokens / statistics.median(on_times):.0f} tokens/s)")
    print(f"{args.lever} off: median step {statistics.median(off_times):.3f} s "
          f"({tokens / statistics.median(off_times):.0f} tokens/s)")
    print(f"step time on/off, pair by pair: median {statistics.median(ratios):.3f}, "
          f"quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f} (below 1: the lever is faster)")


if __name__ == "__main__":
    main()
