"""Build reports/report.md and its charts from the pipeline's metrics files, and nothing else.

(Over 300 lines: reading every input with its checks, and the plain sections; the findings in words
are in transferlm.report.findings, number formats in transferlm.report.fmt.)

Every number in the report is read from metrics/ (and reports/samples.jsonl), and every sentence is
generated from those numbers (the findings in transferlm.report.findings). An input that does not exist yet (a
stage that has not run) turns its section into a "not available" line; an input that exists but is
malformed is an InputError, because a report built on it would be wrong without saying so.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlm.core import artifacts, curves, paths
from transferlm.core.paths import MODELS
from transferlm.evaluate.prompts import describe_source
from transferlm.report import findings
from transferlm.report.fmt import (
    fenced,
    fmt_bpb,
    fmt_int,
    fmt_loss,
    fmt_ppl,
    fmt_ratio,
    fmt_seconds,
    fmt_short,
    listed,
    num,
    table,
    unavailable,
)

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- reading the inputs

@dataclass(frozen=True)
class Inputs:
    fetch: dict | None
    clean: dict | None
    tokenize: dict | None
    zeroshot: dict | None
    frontier: dict | None
    study: dict | None
    eval: dict | None
    review: dict | None
    samples: list[dict] | None
    training_samples: list[dict]  # the fine-tune's samples while training, by step
    timings: list[dict]


def _curve(run_folder: Path) -> list[dict] | None:
    """A run's held-out curve, or None where the run has not been made (a partial report)."""
    return curves.read_curve(run_folder, "val") if (run_folder / "plots").is_dir() else None


def _step_seconds(study_dir: Path) -> dict[str, float]:
    """Per optimizer, the median steady-state seconds per step over all its study runs (first step and
    held-out evaluations excluded: tokens per step / the run's measured tokens per second)."""
    import statistics

    per_optimizer: dict[str, list[float]] = {}
    for path in study_dir.glob("**/metrics.json"):
        m = artifacts.run_metrics(path.parent)
        if m.get("tokens_per_s") and m.get("steps") and not m.get("diverged") and "lr_find" not in m.get("name", ""):
            per_optimizer.setdefault(m["optimizer"], []).append(m["tokens"] / m["steps"] / m["tokens_per_s"])
    return {name: statistics.median(values) for name, values in per_optimizer.items()}


def load_inputs(root: Path) -> Inputs:
    frontier = artifacts.read_optional(root / paths.FRONTIER, ("bound", "ladder", "data_efficiency", "seeds"))
    if frontier is not None:  # the curves behind the frontier chart
        frontier["finetune_curve"] = _curve(root / paths.FINETUNE_RUN) or []
        for row in frontier["ladder"]:
            row["curve"] = _curve(root / paths.LADDER / row["size"])
        frontier["scratch_long"]["curve"] = _curve(root / paths.SCRATCH_LONG)
    study = artifacts.read_optional(root / paths.STUDY_SUMMARY,
                                    ("grid", "rounds", "finalists", "recommended", "optimizers"))
    if study is not None:
        study["speed"] = _step_seconds(root / paths.STUDY)
    lr_find = root / paths.PLOTS / "study" / "lr_find.csv"
    if study is not None and lr_find.is_file():
        with lr_find.open(encoding="utf-8") as f:
            study["lr_find_rows"] = [{"optimizer": r["optimizer"], "lr": float(r["lr"]), "loss": float(r["loss"]),
                                      "smoothed": float(r["smoothed"])} for r in csv.DictReader(f)]
    if study is not None:
        study["batch_size"] = artifacts.read_optional(root / paths.STUDY_BATCH_SUMMARY, ("runs",))
    timings = [artifacts.read_json(p, p.stem) for p in sorted((root / paths.TIMINGS).glob("*.json"))]
    return Inputs(
        fetch=artifacts.read_optional(root / paths.FETCH_METRICS, ("corpus", "model")),
        clean=artifacts.read_optional(root / paths.CLEAN_METRICS,
                                      ("documents_in", "documents_out", "rules", "dropped")),
        tokenize=artifacts.read_optional(root / paths.TOKENIZE_METRICS, ("block_size", "train", "validation")),
        zeroshot=artifacts.read_optional(root / paths.ZEROSHOT, ("loss",)),
        frontier=frontier,
        study=study,
        eval=artifacts.read_optional(root / paths.EVAL_METRICS, ("perplexity",)),
        review=artifacts.read_optional(root / paths.REVIEW_METRICS, ("models",)),
        samples=artifacts.read_jsonl_optional(root / paths.SAMPLES_JSONL),
        training_samples=curves.read_samples(root / paths.FINETUNE_RUN),
        timings=timings,
    )


# ----------------------------------------------------------------------------- sections


def dataset_section(inputs: Inputs) -> str:
    parts = ["## 6. Dataset"]
    fetch, clean, tok = inputs.fetch, inputs.clean, inputs.tokenize
    if fetch is None:
        parts.append("**Sources.** " + unavailable("fetch"))
    else:
        corpus = fetch["corpus"]
        parts.append(
            f"**Sources.** {fmt_int(corpus['documents'])} documents, {fmt_int(corpus['bytes'])} bytes in all:"
        )
        parts.append(table(
            ["source", "documents", "bytes"],
            [[f"`{s['source']}`", fmt_int(s["documents"]), fmt_int(s["bytes"])] for s in corpus["sources"]],
        ))
    if clean is None:
        parts.append("**Cleaning.** " + unavailable("clean"))
    else:
        kept = f"**Cleaning** kept {fmt_int(clean['documents_out'])} of {fmt_int(clean['documents_in'])} documents"
        if "chars_in" in clean and "chars_out" in clean and clean["chars_in"]:
            removed = 1 - clean["chars_out"] / clean["chars_in"]
            kept += (f" and {fmt_int(clean['chars_out'])} of {fmt_int(clean['chars_in'])} characters"
                     f" ({removed:.1%} removed)")
        parts.append(kept + ". What each rule changed:")
        parts.append(table(
            ["rule", "changes", "characters removed"],
            [[name, fmt_int(r["count"]), fmt_int(r["chars_removed"])] for name, r in clean["rules"].items()],
        ))
        dropped = clean["dropped"]
        if dropped:
            parts.append(f"Dropped documents ({len(dropped)}): "
                         + listed([f"{d['name']} ({d['reason']})" for d in dropped]) + ".")
        else:
            parts.append("No document was dropped.")
    if tok is None:
        parts.append("**Tokenization.** " + unavailable("tokenize"))
    else:
        how = ("by document (no document is in both)" if tok.get("split_method", "by_document") == "by_document"
               else "within the one document (held-out chunks cut at paragraph boundaries, no overlap)")
        parts.append(f"**Preprocessing.** Train and validation are split {how}; documents are joined with the "
                     f"end-of-text token and packed into blocks of {fmt_int(tok['block_size'])} tokens (no padding).")
        parts.append(table(
            ["split", "documents", "tokens", "blocks"],
            [[split, fmt_int(tok[split]["documents"]), fmt_int(tok[split]["tokens"]), fmt_int(tok[split]["blocks"])]
             for split in ("train", "validation")],
        ))
        names = tok.get("validation_documents", [])
        if names:
            parts.append(f"Validation documents: {listed(names)}.")
    if fetch is not None:
        m = fetch["model"]
        parts.append(
            f"**Base model.** `{m['source']}`: {m['architecture']}, {fmt_int(m['parameters'])} parameters "
            f"({fmt_short(m['parameters'])}), vocabulary of {fmt_int(m['vocab_size'])} tokens, context of "
            f"{fmt_int(m['max_position_embeddings'])} tokens."
        )
    return "\n\n".join(parts)




def _ordered_models(names: Any) -> list[str]:
    return [m for m in MODELS if m in names] + sorted(set(names) - set(MODELS))


def eval_sentence(ev: dict) -> str | None:
    ppl = {m: num(v["perplexity"]) for m, v in ev["perplexity"].items()}
    if "finetuned" not in ppl or "base" not in ppl:
        return None
    ft, base = ppl["finetuned"], ppl["base"]
    direction = "lower" if ft <= base else "higher"
    text = (f"Fine-tuned perplexity **{fmt_ppl(ft)}** is {fmt_ratio(max(ft, base) / min(ft, base))} {direction} "
            f"than the base model's zero-shot **{fmt_ppl(base)}**")
    if "scratch" in ppl:
        sc = ppl["scratch"]
        text += f"; the scratch model's **{fmt_ppl(sc)}** is {fmt_ratio(sc / ft)} the fine-tuned perplexity"
    return text + "."


def _criteria_source(ev: dict) -> str:
    """Which criteria the review page asks: the layout's set (its reading is the line above), or the params'."""
    picked = ev.get("review_criteria", "")
    layout = ev["layout"]["name"]
    return f"the {layout} set, picked by that layout" if picked.startswith(f"{layout} criteria:") else picked


def eval_section(inputs: Inputs) -> str:
    parts = ["## 5. Perplexity, sample measures and review"]
    ev = inputs.eval
    if ev is None:
        return "\n\n".join(parts + [unavailable("evaluate")])
    samples = ev.get("samples", {})
    n = ev.get("copy_ngram", "n")
    bpt = (inputs.zeroshot or {}).get("bytes_per_token")
    rows = []
    for model in _ordered_models(set(ev["perplexity"]) | set(samples)):
        p, s = ev["perplexity"].get(model), samples.get(model)
        row = [model]
        row += ([fmt_loss(p["loss"]), fmt_bpb(p["loss"], bpt), fmt_ppl(p["perplexity"]), fmt_int(p["tokens"])]
                if p else ["–"] * 4)
        if s:
            row += [f"{num(s[k]):.3f}" for k in ("distinct_1", "distinct_2", "repetition_rate", "copy_rate")]
            row.append("–" if s.get("format_rate") is None else f"{s['format_rate']:.0%}")
            row.append(f"{num(s['mean_new_tokens']):.1f}")
        else:
            row += ["–"] * 6
        rows.append(row)
    parts.append(f"Held-out loss and perplexity (the same held-out blocks and loss as every training curve: one "
                 f"loss per model), and measures of the generated samples (copy rate: share of {n}-grams found "
                 f"verbatim in the training split). `scratch` is the best size of the from-scratch ladder:")
    parts.append(table(["model", "val loss", "bits per byte", "perplexity", "eval tokens", "distinct-1", "distinct-2",
                         "repetition rate", f"{n}-gram copy rate", "in the corpus's layout", "mean new tokens"], rows))
    if ev.get("layout"):
        parts.append(f"Layout: {ev['layout']['reading']}. The format measure is the share of samples that read as "
                     f"that layout (the clean stage's own parts: `NAME:` cues followed by speech, headings, "
                     f"bracketed action). Review criteria: {_criteria_source(ev)}.")
    sentence = eval_sentence(ev)
    if sentence:
        parts.append(sentence)
    parts.append(review_paragraph(inputs.review))
    return "\n\n".join(parts)




def samples_section(inputs: Inputs) -> str:
    parts = ["## 7. Samples"]
    if not inputs.samples:
        return "\n\n".join(parts + [unavailable("generate")])
    prompt = inputs.samples[0]["prompt"]
    of_prompt = [r for r in inputs.samples if r["prompt"] == prompt]
    index = min(r["sample"] for r in of_prompt)
    chosen = {r["model"]: r for r in of_prompt if r["sample"] == index}
    source = of_prompt[0].get("prompt_source")
    parts.append(f"First prompt, sample {index}, completion of each model (prompt not repeated)"
                 + (f"; from {describe_source(source)}" if source else "") + ":")
    parts.append(fenced(prompt))
    for model in _ordered_models(chosen):
        row = chosen[model]
        settings = row.get("settings", {})
        detail = ", ".join(f"{k} {v}" for k, v in settings.items() if k in ("temperature", "top_k", "top_p"))
        parts.append(f"**{model}** ({row['new_tokens']} new tokens, seed {row['seed']}"
                     + (f", {detail}" if detail else "") + "):")
        parts.append(fenced(row["text"]))
    parts += training_samples_paragraphs(inputs.training_samples)
    return "\n\n".join(parts)


def training_samples_paragraphs(rows: list[dict]) -> list[str]:
    """The fine-tune's greedy continuation of one held-out prompt at its first, a middle and its last evaluation."""
    if not rows:
        return []
    picked = list(dict.fromkeys(map(id, [rows[0], rows[len(rows) // 2], rows[-1]])))
    chosen = [r for r in rows if id(r) in picked]
    parts = ["While the fine-tune trained (greedy continuation of the opening of a held-out block, logged at each "
             "evaluation to `metrics/finetune/samples.jsonl`):", fenced(rows[0]["prompt"])]
    for row in chosen:
        parts += [f"**step {row['step']}**:", fenced(row["text"])]
    return parts




def review_paragraph(review: dict | None) -> str:
    if review is None:
        return ("**Blind review.** No ratings yet: open `reports/review/index.html`, rate, export to `reviews/`, "
                "then `python stages/evaluate.py score reviews/*.json` (writes metrics/review.json; rerun "
                "`dvc repro -f report` to bring it here).")
    rows = []
    for model in _ordered_models(review["models"]):
        m = review["models"][model]
        cells = [f"{m[c]:.2f}" if m.get(c) is not None else "–" for c in review.get("criteria", [])]
        rows.append([model, str(m.get("rated", "–")), *cells])
    text = [f"**Blind review** ({review.get('rated', 0)} ratings from {len(review.get('files', []))} file(s); "
            f"means, 1-5):", table(["model", "rated", *review.get("criteria", [])], rows)]
    pairwise = review.get("pairwise")
    if pairwise:
        text.append("Pairwise: " + ", ".join(
            f"{m} wins {p['win_rate']:.0%} (95% CI {p['win_rate_ci'][0]:.0%}-{p['win_rate_ci'][1]:.0%})"
            for m, p in pairwise["models"].items()) + f"; ranking {' > '.join(pairwise['ranking'])}.")
    if pairwise and pairwise.get("against_reference"):
        text.append("Against the real held-out text (`reference`, blind on the page like the models): " + ", ".join(
            f"{m} preferred in {r['fooled_rate']:.0%} of {r['comparisons']} comparisons (95% CI "
            f"{r['fooled_rate_ci'][0]:.0%}-{r['fooled_rate_ci'][1]:.0%})"
            for m, r in pairwise["against_reference"].items()) + ".")
    return "\n\n".join(text)


def timing_section(inputs: Inputs) -> str:
    parts = ["## 8. Where the time went"]
    if not inputs.timings:
        return "\n\n".join(parts + ["_No stage timings recorded (they are written under `dvc repro`)._"])
    z = inputs.zeroshot or {}
    total = sum(t["seconds"] for t in inputs.timings)
    parts.append(f"Wall-clock of each stage in its latest `dvc repro` (metrics/timings/), on "
                 f"{z.get('cpu', 'an unrecorded CPU')} ({z.get('cores', '?')} cores, {z.get('device', '?')}, torch "
                 f"{z.get('torch', '?')}; training in {z.get('precision', '?')}: "
                 f"{(z.get('precision_choice') or {}).get('reason', 'no reason recorded')}). "
                 f"Sum: {fmt_seconds(total)}.")
    rows = [[f"`{t['stage']}`", fmt_seconds(t["seconds"])] for t in inputs.timings]
    parts.append(table(["stage", "wall-clock"], rows))
    return "\n\n".join(parts)


def summary_section(inputs: Inputs) -> str:
    lines = []
    if inputs.frontier is not None:
        if sentence := findings.time_sentence(inputs.frontier, inputs.zeroshot):
            lines.append(sentence)
        lines.append(findings.compute_sentence(inputs.frontier))
        if sentence := findings.data_sentence(inputs.frontier["data_efficiency"]):
            lines.append(sentence)
    if inputs.eval is not None and (sentence := eval_sentence(inputs.eval)):
        lines.append(sentence)
    if inputs.study is not None:
        rec = inputs.study["recommended"]
        ties = inputs.study["ties_with_best"]
        lines.append(f"The study recommends **{rec['optimizer']} at lr {rec['lr']:g}** for this budget "
                     f"(final held-out loss {fmt_loss(rec['mean'])} ± {rec['std']:.3f} over {len(rec['seeds'])} seeds)"
                     + (f"; within the seed spread of {', '.join(ties)}." if ties else "."))
    body = "\n".join(f"- {line}" for line in lines) if lines else "_No results yet: no stage has run._"
    return "## Summary\n\n" + body


REPRODUCE = """## 9. How to reproduce

`make repro` runs the whole pipeline on `params.yaml`; `dvc exp run -S train.lr=3e-5` reruns it with one \
parameter changed; `dvc plots diff` compares the curves of experiments."""


def build_report(root: Path, plots_dir: Path, image_link: str = "../plots/report") -> str:
    """Read the metrics under `root`, write the charts into `plots_dir`, return the markdown.

    `image_link` is the charts' folder as seen from the report's final location.
    """
    inputs = load_inputs(root)
    sections = [
        "# transferlm: what transfer learning saves",
        summary_section(inputs),
        findings.compute_section(inputs.frontier, inputs.zeroshot, plots_dir, image_link),
        findings.data_section(inputs.frontier, inputs.zeroshot, plots_dir, image_link),
        findings.epochs_section(inputs.frontier, inputs.zeroshot, plots_dir, image_link),
        findings.study_section(inputs.study, inputs.zeroshot, plots_dir, image_link),
        eval_section(inputs),
        dataset_section(inputs),
        samples_section(inputs),
        timing_section(inputs),
        REPRODUCE,
    ]
    log.info("report built; charts: %s", ", ".join(sorted(p.name for p in plots_dir.glob("*.png"))) or "none")
    return "\n\n".join(sections) + "\n"
