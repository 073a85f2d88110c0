"""Sampling throughput: this project's batched generation against pipeline("text-generation") per prompt.

    python bench/generate_throughput.py [--model models/base] [--params params.yaml]

Both sample the same prompts with the same settings and max_new_tokens (params.yaml's generate section,
or its defaults): `transferlm.evaluate.generate.generate_batch` with left-padded batches of generate.batch_size
and the KV cache, as the generate stage runs it; the baseline calls a text-generation pipeline once per
(prompt, sample). New tokens are counted up to the first end-of-sequence token, model loading is not
timed, and each side gets one warm-up call first. Writes metrics/bench_generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def project_rate(model_dir: Path, settings, jobs: list[tuple[str, int]]) -> dict:
    from transferlm.evaluate.generate import generate_batch, load_model

    model, tokenizer = load_model(model_dir)
    generate_batch(model, tokenizer, [jobs[0][0]], [0], settings)  # warm-up
    sync()
    t0 = time.perf_counter()
    tokens = 0
    for start in range(0, len(jobs), settings.batch_size):
        batch = jobs[start : start + settings.batch_size]
        seeds = [settings.seed + i for _, i in batch]
        completions = generate_batch(model, tokenizer, [prompt for prompt, _ in batch], seeds, settings)
        tokens += sum(done.new_tokens for done in completions)
    sync()
    seconds = time.perf_counter() - t0
    return {"new_tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "batch_size": settings.batch_size}


def pipeline_rate(model_dir: Path, settings, jobs: list[tuple[str, int]]) -> dict:
    from transformers import pipeline

    generator = pipeline("text-generation", model=str(model_dir), device=0 if torch.cuda.is_available() else -1,
                         trust_remote_code=False)
    eos = generator.model.generation_config.eos_token_id
    stop = set(eos) if isinstance(eos, list) else {eos}
    sampling = {
        "max_new_tokens": settings.max_new_tokens, "do_sample": True, "temperature": settings.temperature,
        "top_k": settings.top_k, "top_p": settings.top_p, "repetition_penalty": settings.repetition_penalty,
    }
    generator(jobs[0][0], **{**sampling, "max_new_tokens": 2})  # warm-up
    sync()
    t0 = time.perf_counter()
    tokens = 0
    for prompt, i in jobs:
        torch.manual_seed(settings.seed + i)
        prompt_len = len(generator.tokenizer(prompt).input_ids)
        ids = generator(prompt, return_tensors=True, **sampling)[0]["generated_token_ids"][prompt_len:]
        tokens += next((n for n, token in enumerate(ids) if token in stop), len(ids))
    sync()
    seconds = time.perf_counter() - t0
    return {"new_tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "batch_size": 1}


BENCH_PROMPTS = ["HAMLET:\nTo be, or not to be, that is the question:\n",
                 "ROMEO:\nBut soft, what light through yonder window breaks?\n",
                 "KING LEAR:\nBlow, winds, and crack your cheeks!\n",
                 "Enter two Gentlemen.\n\nFIRST GENTLEMAN:\n"]


def main() -> None:
    from transferlm.core.params import GenerateParams, load_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/base"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_generate.json"))
    args = parser.parse_args()
    os.chdir(ROOT)
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model}: no model (run the fetch stage first, or pass --model)")
    settings = load_params(args.params).generate if args.params.is_file() else GenerateParams()
    # `generate.prompts: auto` cuts prompts from the held-out split at generate time; the bench times the
    # decoding, so fixed prompts of a similar length do.
    prompts = settings.prompts if isinstance(settings.prompts, list) else BENCH_PROMPTS
    jobs = [(prompt, i) for prompt in prompts for i in range(settings.num_samples)]

    project = project_rate(args.model, settings, jobs)
    baseline = pipeline_rate(args.model, settings, jobs)
    report = {
        "tokens_per_s": project["tokens_per_s"],
        "pipeline_tokens_per_s": baseline["tokens_per_s"],
        "speedup_vs_pipeline": round(project["tokens_per_s"] / baseline["tokens_per_s"], 2),
        "transferlm": project,
        "pipeline": baseline,
        "settings": {"model": str(args.model), "prompts": len(prompts), "samples_per_prompt":
                     settings.num_samples, "max_new_tokens": settings.max_new_tokens,
                     "device": "cuda" if torch.cuda.is_available() else "cpu",
                     "torch_threads": torch.get_num_threads(), "loadavg": [round(x, 2) for x in os.getloadavg()]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'':<34}{'new tokens':>11}{'seconds':>9}{'tokens/s':>10}")
    for name, row in (("transferlm.evaluate.generate (batched)", project),
                      ("pipeline, one prompt at a time", baseline)):
        print(f"{name:<34}{row['new_tokens']:>11}{row['seconds']:>9.1f}{row['tokens_per_s']:>10.1f}")
    print(f"speed-up: {report['speedup_vs_pipeline']}x")


if __name__ == "__main__":
    main()
