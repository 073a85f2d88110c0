"""Sampling from the base, fine-tuned and from-scratch models side by side.

All three models get the same prompts, settings and seeds. Sample i of every prompt is drawn with its own
random generator seeded with `seed + i` (see `RowSampler`), so a sample does not depend on which other
prompts share its batch: rerunning with another batch_size, or one prompt alone from the command line,
gives the same text up to float noise from left padding.

The blind review gets samples of its own, drawn with the seeds after the labelled ones (`review_settings`)
and kept outside reports/: no text on the review page is printed anywhere under its model's name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from transferlm.core.params import GenerateParams
from transferlm.core.paths import MODELS
from transferlm.evaluate.prompts import continuation, describe_source, listed_prompts
from transferlm.evaluate.review_stats import REFERENCE
from transferlm.lm.models import load_for_inference

log = logging.getLogger(__name__)

class RowSampler(LogitsProcessor):
    """Draw each row's next token with that row's own generator and force it (all other scores -inf).

    model.generate's own multinomial draw uses one global generator for the whole batch, so a row's sample
    would depend on its batch mates. After this processor the distribution is one-hot and that draw can
    only pick our token.
    """

    def __init__(self, seeds: list[int], device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = scores.float().softmax(dim=-1)
        picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, picks[:, None], 0.0)


@dataclass(frozen=True)
class Completion:
    text: str  # the completion only, prompt excluded, cut at the first end-of-sequence token
    new_tokens: int


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    seeds: list[int],
    settings: GenerateParams,
) -> list[Completion]:
    """One sampled completion per (prompt, seed) pair, all in one left-padded batch with the KV cache."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    stop_ids = set(eos) if isinstance(eos, list) else {eos}
    # Temperature, top-k and top-p run in our processor list, just before RowSampler; the built-in copies
    # are switched off so that they are not applied twice (they would run after ours).
    config = GenerationConfig(
        do_sample=True,
        max_new_tokens=settings.max_new_tokens,
        repetition_penalty=settings.repetition_penalty,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    processors: list[LogitsProcessor] = [TemperatureLogitsWarper(settings.temperature)]
    if settings.top_k > 0:
        processors.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(settings.top_p))
    processors.append(RowSampler(seeds, model.device))
    with torch.inference_mode():
        output = model.generate(
            **inputs, generation_config=config, logits_processor=LogitsProcessorList(processors)
        )
    completions = []
    for row in output[:, inputs["input_ids"].shape[1] :].tolist():
        cut = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
        completions.append(Completion(tokenizer.decode(row[:cut], skip_special_tokens=True), cut))
    return completions


def generate_samples(model_name: str, path: str | Path, settings: GenerateParams) -> list[dict]:
    """settings.num_samples samples per prompt from the model at `path`, as samples.jsonl rows."""
    model, tokenizer = load_for_inference(path)
    return sample_rows(model, tokenizer, model_name, settings)


def sample_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_name: str,
    settings: GenerateParams,
    sources: list[dict] | None = None,
) -> list[dict]:
    """settings.num_samples samples per prompt from a loaded model, as samples.jsonl rows.

    settings.prompts is a list here (`auto` is resolved by transferlm.evaluate.prompts first); `sources` says where
    each came from (default: its place in generate.prompts).
    """
    if not isinstance(settings.prompts, list):
        raise TypeError("generate.prompts must be resolved to a list first (evaluate.prompts.resolve_prompts)")
    sources = sources or [prompt.source for prompt in listed_prompts(settings.prompts)]
    jobs = [(prompt, source, i) for prompt, source in zip(settings.prompts, sources, strict=True)
            for i in range(settings.num_samples)]
    shared = sampling_settings(settings)
    rows: list[dict] = []
    started = time.perf_counter()
    for start in tqdm(range(0, len(jobs), settings.batch_size), desc=f"generate {model_name}", unit="batch"):
        batch = jobs[start : start + settings.batch_size]
        seeds = [settings.seed + i for _, _, i in batch]
        completions = generate_batch(model, tokenizer, [prompt for prompt, _, _ in batch], seeds, settings)
        for (prompt, source, i), seed, done in zip(batch, seeds, completions, strict=True):
            rows.append(
                {
                    "model": model_name,
                    "prompt": prompt,
                    "prompt_source": source,
                    "sample": i,
                    "seed": seed,
                    "text": done.text,
                    "new_tokens": done.new_tokens,
                    "settings": shared,
                }
            )
    seconds = time.perf_counter() - started
    tokens = sum(row["new_tokens"] for row in rows)
    rate = tokens / max(seconds, 1e-9)
    log.info("%s: %d samples, %d new tokens in %.1fs (%.1f tokens/s)", model_name, len(rows), tokens, seconds, rate)
    return rows


def review_settings(settings: GenerateParams) -> GenerateParams:
    """The blind review's settings: the same but for seeds, which follow the labelled samples' seeds."""
    return dataclasses.replace(settings, seed=settings.seed + settings.num_samples)


def blind_samples(review: list[dict], labelled: list[dict]) -> list[dict]:
    """The review rows whose text no labelled row has (near-greedy settings can repeat a text across seeds)."""
    shown = {row["text"] for row in labelled}
    kept = [row for row in review if row["text"] not in shown]
    if len(kept) < len(review):
        log.warning("%d review sample(s) left out: the same text is in the labelled samples", len(review) - len(kept))
    return kept


def reference_rows(prompts: list, pieces: list, settings: GenerateParams, tokenizer) -> list[dict]:
    """One review row per auto prompt: the held-out text that follows it, as long as a sample (sample 0,
    so it is paired with every model's first sample of that prompt). None for listed prompts."""
    rows = []
    for prompt in prompts:
        if found := continuation(prompt, pieces, settings.max_new_tokens, tokenizer):
            text, tokens = found
            rows.append({"model": REFERENCE, "prompt": prompt.text, "prompt_source": prompt.source, "sample": 0,
                         "seed": None, "text": text, "new_tokens": tokens, "settings": sampling_settings(settings)})
    return rows


def sampling_settings(settings: GenerateParams) -> dict:
    """The settings that shape every sample (recorded with each one); prompts and seeds are per row."""
    keep = ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty")
    return {key: value for key, value in asdict(settings).items() if key in keep}


def samples_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _fenced(text: str) -> str:
    # A fence longer than any backtick run inside, so generated text cannot close it early.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def samples_markdown(rows: list[dict], settings: GenerateParams) -> str:
    """A readable page: for each prompt and sample index, the three models' completions in a row."""
    shared = ", ".join(f"{key}={value}" for key, value in sampling_settings(settings).items())
    lines = [
        "# Samples",
        "",
        f"Settings: {shared}. {settings.num_samples} sample(s) per prompt and model; sample i uses seed "
        f"{settings.seed} + i for every model. Each block is the completion only; the prompt is shown above it.",
        "",
        "The blind review (reports/review/) shows other samples, drawn with the seeds after these, so reading "
        "this page tells a reviewer nothing about which model wrote which text there.",
        "",
    ]
    by_key = {(row["prompt"], row["sample"], row["model"]): row for row in rows}
    source_of = {row["prompt"]: row["prompt_source"] for row in rows if "prompt_source" in row}
    models = [name for name in MODELS if any(row["model"] == name for row in rows)]
    for number, prompt in enumerate(settings.prompts, start=1):
        lines += [f"## Prompt {number}", ""]
        if prompt in source_of:
            lines += [f"From {describe_source(source_of[prompt])}.", ""]
        lines += [_fenced(prompt), ""]
        for i in range(settings.num_samples):
            lines += [f"### Sample {i} (seed {settings.seed + i})", ""]
            for name in models:
                row = by_key.get((prompt, i, name))
                if row is not None:
                    lines += [f"**{name}** ({row['new_tokens']} new tokens)", "", _fenced(row["text"]), ""]
    return "\n".join(lines)
