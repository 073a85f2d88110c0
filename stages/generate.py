"""Sample from the base, fine-tuned and from-scratch models side by side; or print one prompt's completion.

    python stages/generate.py                                   # pipeline: reports/samples.{jsonl,md},
                                                                # and the blind review's data/review_samples.jsonl
    python stages/generate.py --prompt "HAMLET:" --model models/finetuned [--max-new-tokens N --seed S]
"""

import dataclasses
from pathlib import Path

import typer

from transferlm.core import artifacts, paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import staged_outputs
from transferlm.core.params import load_params
from transferlm.data.layout import DOCUMENTS
from transferlm.evaluate.generate import (
    blind_samples,
    generate_batch,
    reference_rows,
    review_settings,
    sample_rows,
    samples_jsonl,
    samples_markdown,
)
from transferlm.evaluate.prompts import SPLIT_METRICS, resolve_prompts
from transferlm.lm.models import check_model_dir, load_for_inference, load_tokenizer

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(
    params_file: Path = PARAMS_FILE,
    prompt: str = typer.Option(None, help="Print one completion of this prompt; writes no pipeline output."),
    model: Path = typer.Option(paths.FINETUNED_MODEL, help="Model directory for --prompt."),
    max_new_tokens: int = typer.Option(None, min=1, help="For --prompt; default generate.max_new_tokens."),
    seed: int = typer.Option(None, help="For --prompt; default generate.seed (= sample 0 of the pipeline)."),
) -> None:
    params = load_params(params_file)
    settings = params.generate
    if prompt is not None:
        settings = dataclasses.replace(
            settings,
            max_new_tokens=max_new_tokens or settings.max_new_tokens,
            seed=settings.seed if seed is None else seed,
        )
        lm, tokenizer = load_for_inference(model)
        (completion,) = generate_batch(lm, tokenizer, [prompt], [settings.seed], settings)
        print(prompt + completion.text)
        return

    compared = artifacts.compared_models(params.scratch.sizes)
    for path in compared.values():  # fail before loading anything
        check_model_dir(path)
    # The compared models share the base model's tokenizer: it measures generate.prompt_tokens.
    counter = load_tokenizer(paths.BASE_MODEL)
    prompts, pieces = resolve_prompts(settings, params.tokenize, DOCUMENTS, SPLIT_METRICS,
                                      lambda text: len(counter(text, add_special_tokens=False)["input_ids"]))
    settings = dataclasses.replace(settings, prompts=[prompt.text for prompt in prompts])
    sources = [prompt.source for prompt in prompts]
    rows, review = [], []
    for name, path in compared.items():
        lm, tokenizer = load_for_inference(path)
        rows += sample_rows(lm, tokenizer, name, settings, sources)
        review += sample_rows(lm, tokenizer, name, review_settings(settings), sources)
        del lm  # one model in memory at a time
    review = blind_samples(review, rows)
    # The real text after each auto prompt joins the blind review as one more "model"; only there, so that
    # no labelled copy of it sits next to the page.
    review += reference_rows(prompts, pieces, settings, counter)
    outputs = (paths.SAMPLES_JSONL, paths.SAMPLES_MD, paths.REVIEW_SAMPLES)
    with staged_outputs(*outputs) as (jsonl_tmp, md_tmp, review_tmp):
        jsonl_tmp.write_text(samples_jsonl(rows), encoding="utf-8")
        md_tmp.write_text(samples_markdown(rows, settings), encoding="utf-8")
        review_tmp.write_text(samples_jsonl(review), encoding="utf-8")


if __name__ == "__main__":
    run_stage(app)
