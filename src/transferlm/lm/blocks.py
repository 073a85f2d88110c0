"""The tokenized corpus as tensors: training blocks, the held-out subset, and the order of batches.

Every held-out loss in the project (training curves, the study's rankings, evaluate's perplexity) is
measured on the same seeded subset of validation blocks, picked here and only here.

Batch order is a pure function of (seed, step): each epoch is a seeded permutation of the training
blocks and step s takes the next slice. A resumed run therefore sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from transferlm.core.errors import InputError


def load_split(data_dir: Path, split: str) -> torch.Tensor:
    """The packed blocks of one split as a LongTensor [n_blocks, block_size]."""
    from datasets import load_from_disk

    if not Path(data_dir).exists():
        raise InputError(f"{data_dir}: not found (run the tokenize stage first)")
    dataset = load_from_disk(str(data_dir))
    if split not in dataset:
        raise InputError(f"{data_dir}: has no {split!r} split")
    if len(dataset[split]) == 0:
        raise InputError(f"{data_dir}: the {split} split is empty")
    ids = dataset[split].with_format("numpy")[:]["input_ids"]
    if ids.ndim != 2 or ids.dtype == object:
        raise InputError(f"{data_dir}: rows of input_ids differ in length; expected fixed-size blocks")
    return torch.as_tensor(ids, dtype=torch.long)


def seeded_subset(blocks: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of n blocks in their original order (all of them when n is 0 or >= len)."""
    if n == 0 or n >= len(blocks):
        return blocks
    generator = torch.Generator().manual_seed(seed)
    return blocks[torch.randperm(len(blocks), generator=generator)[:n].sort().values]


def heldout_blocks(data_dir: Path, n: int, seed: int) -> torch.Tensor:
    """The held-out blocks every loss is measured on: `evaluate.eval_blocks` of the validation split."""
    return seeded_subset(load_split(data_dir, "validation"), n, seed)


def training_blocks(data_dir: Path, fraction: float = 1.0, seed: int = 0) -> torch.Tensor:
    """The training split, or a seeded `fraction` of its blocks (the data-efficiency runs)."""
    blocks = load_split(data_dir, "train")
    if fraction >= 1.0:
        return blocks
    return seeded_subset(blocks, max(1, math.ceil(fraction * len(blocks))), seed)


def batch_indices(step: int, global_batch: int, n_blocks: int, seed: int) -> torch.Tensor:
    """Indices of the blocks in global batch `step`: consecutive slices of per-epoch permutations."""
    start = step * global_batch
    indices: list[int] = []
    while len(indices) < global_batch:
        epoch, offset = divmod(start + len(indices), n_blocks)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        indices.extend(perm[offset : offset + global_batch - len(indices)].tolist())
    return torch.tensor(indices)
