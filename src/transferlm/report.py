"""Build reports/report.md and its charts from the pipeline's metrics files, and nothing else.

Every number in the report is read from metrics/*.json, plots/*/*.csv or reports/samples.jsonl, and
every sentence is generated from those numbers. An input that does not exist yet (a stage that has
not run) turns its section into a "not available" line; an input that exists but is malformed is an
InputError, because a report built on it would be wrong without saying so.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from transferlm import charts
from transferlm.errors import InputError
from transferlm.scaling import Fit, compute_to_reach, fit_power_law

log = logging.getLogger(__name__)

REPORT_PATH = Path("reports/report.md")
PLOTS_DIR = Path("plots/report")
MODELS = ("base", "finetuned", "scratch")
VAL_COLUMNS = ("step", "tokens", "flops", "seconds", "val_loss")
SWEEP_CURVE_COLUMNS = ("run", "optimizer", "lr", "step", "tokens", "val_loss")
MAX_LISTED = 15  # longer lists (dropped documents, validation documents) are cut with "... and N more"


# ----------------------------------------------------------------------------- reading the inputs


def _read_json(path: Path, required: tuple[str, ...]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(f"{path}: missing key {missing[0]!r}")
    return data


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc.__class__.__name__})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    if frame.empty:
        raise InputError(f"{path}: no rows")
    return frame


def _read_jsonl(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number}: not valid JSON") from None
    return rows


@dataclass(frozen=True)
class Inputs:
    fetch: dict | None
    clean: dict | None
    tokenize: dict | None
    train: dict | None
    scratch: dict | None
    sweep: dict | None
    eval: dict | None
    train_val: pd.DataFrame | None
    scratch_val: pd.DataFrame | None
    sweep_curves: pd.DataFrame | None
    samples: list[dict] | None


RUN_KEYS = ("tokens", "flops", "seconds", "initial_val_loss", "final_val_loss", "diverged")


def load_inputs(root: Path) -> Inputs:
    return Inputs(
        fetch=_read_json(root / "metrics/fetch.json", ("corpus", "model")),
        clean=_read_json(root / "metrics/clean.json", ("documents_in", "documents_out", "rules", "dropped")),
        tokenize=_read_json(root / "metrics/tokenize.json", ("block_size", "train", "validation")),
        train=_read_json(root / "metrics/train.json", RUN_KEYS),
        scratch=_read_json(root / "metrics/scratch.json", RUN_KEYS),
        sweep=_read_json(root / "metrics/sweep.json", ("runs", "best")),
        eval=_read_json(root / "metrics/eval.json", ("perplexity",)),
        train_val=_read_csv(root / "plots/train/val_loss.csv", VAL_COLUMNS),
        scratch_val=_read_csv(root / "plots/scratch/val_loss.csv", VAL_COLUMNS),
        sweep_curves=_read_csv(root / "plots/sweep/val_loss.csv", SWEEP_CURVE_COLUMNS),
        samples=_read_jsonl(root / "reports/samples.jsonl"),
    )


# ----------------------------------------------------------------------------- number formats


def _num(value: Any) -> float:
    """JSON null (how a diverged run may record its loss) reads as NaN."""
    return math.nan if value is None else float(value)


def fmt_loss(x: Any) -> str:
    return f"{_num(x):.3f}"


def fmt_ppl(x: Any) -> str:
    return f"{_num(x):,.2f}"


def fmt_int(x: Any) -> str:
    return f"{int(x):,}"


def fmt_flops(x: Any) -> str:
    return f"{_num(x):.2e}"


def fmt_seconds(x: Any) -> str:
    s = _num(x)
    return f"{s:,.1f} s" + (f" ({s / 60:.1f} min)" if s >= 120 else "")


def fmt_short(x: Any) -> str:
    """134515008 -> 134.5M, for parameter counts a reader compares by eye."""
    n = _num(x)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:g}"


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _unavailable(*stages: str) -> str:
    names = " and ".join(f"`{s}`" for s in stages)
    return f"_Not available (stage {names} has not run)._"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fenced(text: str) -> str:
    """A code fence longer than any backtick run inside the text, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


# ----------------------------------------------------------------------------- 1. dataset


def dataset_section(inputs: Inputs) -> str:
    parts = ["## 1. Dataset"]
    fetch, clean, tok = inputs.fetch, inputs.clean, inputs.tokenize
    if fetch is None:
        parts.append("**Sources.** " + _unavailable("fetch"))
    else:
        corpus = fetch["corpus"]
        parts.append(
            f"**Sources.** {fmt_int(corpus['documents'])} documents, {fmt_int(corpus['bytes'])} bytes in all:"
        )
        parts.append(_table(
            ["source", "documents", "bytes"],
            [[f"`{s['source']}`", fmt_int(s["documents"]), fmt_int(s["bytes"])] for s in corpus["sources"]],
        ))
    if clean is None:
        parts.append("**Cleaning.** " + _unavailable("clean"))
    else:
        kept = f"**Cleaning** kept {fmt_int(clean['documents_out'])} of {fmt_int(clean['documents_in'])} documents"
        if "chars_in" in clean and "chars_out" in clean and clean["chars_in"]:
            removed = 1 - clean["chars_out"] / clean["chars_in"]
            kept += (f" and {fmt_int(clean['chars_out'])} of {fmt_int(clean['chars_in'])} characters"
                     f" ({removed:.1%} removed)")
        parts.append(kept + ". What each rule changed:")
        parts.append(_table(
            ["rule", "changes", "characters removed"],
            [[name, fmt_int(r["count"]), fmt_int(r["chars_removed"])] for name, r in clean["rules"].items()],
        ))
        dropped = clean["dropped"]
        if dropped:
            parts.append(f"Dropped documents ({len(dropped)}): "
                         + _listed([f"{d['name']} ({d['reason']})" for d in dropped]) + ".")
        else:
            parts.append("No document was dropped.")
    if tok is None:
        parts.append("**Tokenization.** " + _unavailable("tokenize"))
    else:
        parts.append(f"**Preprocessing.** Documents are split into train and validation by document, joined "
                     f"with the end-of-text token and packed into blocks of {fmt_int(tok['block_size'])} tokens "
                     f"(no padding).")
        parts.append(_table(
            ["split", "documents", "tokens", "blocks"],
            [[split, fmt_int(tok[split]["documents"]), fmt_int(tok[split]["tokens"]), fmt_int(tok[split]["blocks"])]
             for split in ("train", "validation")],
        ))
        names = tok.get("validation_documents", [])
        if names:
            parts.append(f"Validation documents: {_listed(names)}.")
    if fetch is not None:
        m = fetch["model"]
        parts.append(
            f"**Base model.** `{m['source']}`: {m['architecture']}, {fmt_int(m['parameters'])} parameters "
            f"({fmt_short(m['parameters'])}), vocabulary of {fmt_int(m['vocab_size'])} tokens, context of "
            f"{fmt_int(m['max_position_embeddings'])} tokens."
        )
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- 2. pretrained vs scratch


@dataclass(frozen=True)
class Comparison:
    finetune: dict  # metrics/train.json
    scratch: dict  # metrics/scratch.json
    scratch_same_budget: pd.Series  # the scratch evaluation at the fine-tune's token budget
    fit: Fit | None
    fit_problem: str | None  # why there is no compute estimate, when there is none
    compute_needed: float | None
    ratio: float | None  # compute_needed / fine-tune compute
    reach: float | None  # compute_needed / largest measured scratch compute


def compare_runs(inputs: Inputs) -> Comparison | None:
    if inputs.train is None or inputs.scratch is None or inputs.train_val is None or inputs.scratch_val is None:
        return None
    ft, sc, curve = inputs.train, inputs.scratch, inputs.scratch_val.sort_values("step")
    within = curve[curve["tokens"] <= ft["tokens"]]
    same_budget = (within if len(within) else curve).iloc[-1]

    target = _num(ft["final_val_loss"])
    points = curve[curve["step"] > 0]
    fit = compute_needed = ratio = reach = None
    problem = None
    try:
        fit = fit_power_law(points["flops"].to_numpy(), points["val_loss"].to_numpy())
    except ValueError as exc:
        problem = f"the scratch curve cannot be fitted ({exc})"
    if fit is not None:
        compute_needed = compute_to_reach(fit, target)
        if not math.isfinite(target):
            problem = "the fine-tune recorded no finite final validation loss"
        elif not fit.decreasing:
            problem = f"the fitted scratch loss does not fall with compute (exponent b = {fit.b:.3g})"
        elif compute_needed is None:
            problem = (f"the fit levels off at {fmt_loss(fit.irreducible)}, above the fine-tune's "
                       f"final loss of {fmt_loss(target)}")
        elif _num(ft["flops"]) > 0:
            ratio = compute_needed / _num(ft["flops"])
            reach = compute_needed / points["flops"].max()
        else:
            problem = "metrics/train.json records no training compute"
    return Comparison(ft, sc, same_budget, fit, problem, compute_needed, ratio, reach)


def headline_sentence(c: Comparison) -> str:
    ft, s = c.finetune, c.scratch_same_budget
    budget = ("the same budget" if s["tokens"] == ft["tokens"]
              else f"{fmt_int(s['tokens'])} tokens (its last evaluation within that budget)")
    gap = _num(s["val_loss"]) - _num(ft["final_val_loss"])
    return (
        f"Fine-tuning the pretrained model reached a validation loss of **{fmt_loss(ft['final_val_loss'])}** "
        f"after {fmt_int(ft['tokens'])} tokens ({fmt_flops(ft['flops'])} FLOPs, {fmt_seconds(ft['seconds'])}), "
        f"starting from the base model's zero-shot loss of **{fmt_loss(ft['initial_val_loss'])}** (step 0). "
        f"Training the same architecture from scratch with {budget} reached **{fmt_loss(s['val_loss'])}**, "
        f"{gap:.3f} nats/token worse (perplexity {math.exp(gap):.1f}× higher)."
    )


def compute_sentence(c: Comparison, inputs: Inputs) -> str:
    if c.ratio is None:
        return f"The extra compute scratch would need to match the fine-tune cannot be estimated: {c.fit_problem}."
    text = (
        f"Matching the fine-tune's final loss from scratch would take about **{fmt_ratio(c.ratio)}** the "
        f"fine-tune's compute ({fmt_flops(c.compute_needed)} vs {fmt_flops(c.finetune['flops'])} FLOPs), "
        f"not counting the compute that pretrained the base model. "
    )
    if c.reach <= 1:
        text += "The target lies within the measured scratch curve, so this is an interpolation."
    else:
        text += (f"This extrapolates {fmt_ratio(c.reach)} beyond the last measured scratch point — "
                 f"treat it as an order-of-magnitude estimate.")
    if _num(c.scratch["flops"]) > 0:
        tokens_needed = c.compute_needed * _num(c.scratch["tokens"]) / _num(c.scratch["flops"])
        text += f" At the scratch run's FLOPs per token that is about {tokens_needed:.2e} tokens"
        if inputs.tokenize is not None and inputs.tokenize["train"]["tokens"]:
            passes = tokens_needed / inputs.tokenize["train"]["tokens"]
            text += f", {passes:,.1f} passes over the training split"
        text += "."
    return text


def comparison_section(inputs: Inputs, c: Comparison | None, plots_dir: Path, link: str) -> str:
    parts = ["## 2. Pretrained vs scratch"]
    if c is None:
        missing = [stage for stage, metrics, curve in (("train", inputs.train, inputs.train_val),
                                                        ("scratch", inputs.scratch, inputs.scratch_val))
                   if metrics is None or curve is None]
        return "\n\n".join(parts + [_unavailable(*missing)])
    charts.plot_pretrained_vs_scratch(
        inputs.train_val, inputs.scratch_val, _num(c.finetune["initial_val_loss"]), c.fit,
        _num(c.finetune["final_val_loss"]), c.compute_needed, plots_dir / "pretrained_vs_scratch.png",
    )
    parts.append(f"![Validation loss of the fine-tune and the scratch run against tokens, FLOPs and "
                 f"wall-clock seconds]({link}/pretrained_vs_scratch.png)")
    parts.append(f"_Log x axes leave out step 0: the dotted line is the base model's zero-shot loss (step 0 of "
                 f"the fine-tune). The dashed line, where a fit exists, is the power law fitted to the scratch "
                 f"curve; a star marks where it reaches the fine-tune's final loss, if that lies within "
                 f"{charts.MAX_FIT_REACH:,.0f}× of the last measured point._")
    parts.append(headline_sentence(c))
    parts.append(f"The scratch run started from a random-initialisation loss of "
                 f"{fmt_loss(c.scratch['initial_val_loss'])} and ended at {fmt_loss(c.scratch['final_val_loss'])}"
                 f" after {fmt_int(c.scratch['tokens'])} tokens ({fmt_seconds(c.scratch['seconds'])}).")
    for name, run in (("fine-tune", c.finetune), ("scratch run", c.scratch)):
        if run["diverged"]:
            parts.append(f"**Note:** the {name} diverged, so its numbers describe a failed run.")
    if c.fit is not None:
        form = "power law with an irreducible term" if c.fit.irreducible > 0 else "pure power law"
        parts.append(f"Fit of the scratch validation curve ({c.fit.points} points after step 0, {form}, "
                     f"R² of log-loss {c.fit.r2:.3f}): {c.fit.describe()}, C in FLOPs.")
    parts.append(compute_sentence(c, inputs))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- 3. sweep


def _sweep_runs(sweep: dict) -> list[dict]:
    return [{**r, "lr": float(r["lr"]), "best_val_loss": _num(r["best_val_loss"]),
             "final_val_loss": _num(r["final_val_loss"])} for r in sweep["runs"]]


def sweep_sentences(sweep: dict) -> list[str]:
    runs = _sweep_runs(sweep)
    best = sweep["best"]
    lines = [f"Best setting: **{best['optimizer']} at lr {float(best['lr']):g}**, best validation loss "
             f"**{fmt_loss(best['best_val_loss'])}** ({len(runs)} runs of {_steps(runs)})."]
    per_optimizer = []
    for optimizer in dict.fromkeys(r["optimizer"] for r in runs):
        ok = [r for r in runs if r["optimizer"] == optimizer and not r["diverged"]
              and math.isfinite(r["best_val_loss"])]
        if ok:
            top = min(ok, key=lambda r: r["best_val_loss"])
            per_optimizer.append(f"{optimizer} lr {top['lr']:g} ({fmt_loss(top['best_val_loss'])})")
        else:
            per_optimizer.append(f"{optimizer} none (every run diverged)")
    lines.append("Best learning rate per optimizer (runs that did not diverge): " + "; ".join(per_optimizer) + ".")
    diverged = [f"{r['optimizer']} at lr {r['lr']:g}" for r in runs if r["diverged"]]
    lines.append(f"Diverged ({len(diverged)}): {', '.join(diverged)}." if diverged else "No run diverged.")
    finite = [r["best_val_loss"] for r in runs if not r["diverged"] and math.isfinite(r["best_val_loss"])]
    if len(finite) > 1:
        lines.append(f"Across the {len(finite)} runs that did not diverge, the best validation loss ranges "
                     f"from {fmt_loss(min(finite))} to {fmt_loss(max(finite))} (a spread of "
                     f"{max(finite) - min(finite):.3f} nats/token).")
    return lines


def _steps(runs: list[dict]) -> str:
    steps = sorted({int(r["steps"]) for r in runs})
    return f"{steps[0]} steps each" if len(steps) == 1 else f"{steps[0]}–{steps[-1]} steps"


def sweep_section(inputs: Inputs, plots_dir: Path, link: str) -> str:
    parts = ["## 3. Optimizer × learning-rate sweep"]
    if inputs.sweep is None or not inputs.sweep["runs"]:
        return "\n\n".join(parts + [_unavailable("sweep_summary")])
    runs = _sweep_runs(inputs.sweep)
    optimizers = list(dict.fromkeys(r["optimizer"] for r in runs))
    lrs = sorted({r["lr"] for r in runs})
    charts.plot_sweep_heatmap(runs, optimizers, lrs, plots_dir / "sweep_heatmap.png")
    parts.append(f"![Best validation loss per optimizer and learning rate]({link}/sweep_heatmap.png)")
    if inputs.sweep_curves is not None:
        diverged = {(r["optimizer"], r["lr"]) for r in runs if r["diverged"]}
        charts.plot_sweep_curves(inputs.sweep_curves, diverged, plots_dir / "sweep_curves.png")
        parts.append(f"![Validation loss curves per optimizer, one line per learning rate]({link}/sweep_curves.png)")
    else:
        parts.append("Curves: " + _unavailable("sweep_summary"))
    parts.append("\n".join(f"- {line}" for line in sweep_sentences(inputs.sweep)))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- 4. evaluation


def _ordered_models(names: Any) -> list[str]:
    return [m for m in MODELS if m in names] + sorted(set(names) - set(MODELS))


def eval_sentence(ev: dict) -> str | None:
    ppl = {m: _num(v["perplexity"]) for m, v in ev["perplexity"].items()}
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


def eval_section(inputs: Inputs) -> str:
    parts = ["## 4. Perplexity and sample measures"]
    ev = inputs.eval
    if ev is None:
        return "\n\n".join(parts + [_unavailable("evaluate")])
    samples = ev.get("samples", {})
    n = ev.get("copy_ngram", "n")
    rows = []
    for model in _ordered_models(set(ev["perplexity"]) | set(samples)):
        p, s = ev["perplexity"].get(model), samples.get(model)
        row = [model]
        row += [fmt_loss(p["loss"]), fmt_ppl(p["perplexity"]), fmt_int(p["tokens"])] if p else ["–"] * 3
        if s:
            row += [f"{_num(s[k]):.3f}" for k in ("distinct_1", "distinct_2", "repetition_rate", "copy_rate")]
            row.append(f"{_num(s['mean_new_tokens']):.1f}")
        else:
            row += ["–"] * 5
        rows.append(row)
    parts.append(f"Held-out validation loss and perplexity, and measures of the generated samples "
                 f"(copy rate: share of {n}-grams found verbatim in the training split):")
    parts.append(_table(["model", "val loss", "perplexity", "eval tokens", "distinct-1", "distinct-2",
                         "repetition rate", f"{n}-gram copy rate", "mean new tokens"], rows))
    sentence = eval_sentence(ev)
    if sentence:
        parts.append(sentence)
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- 5. samples


def samples_section(inputs: Inputs) -> str:
    parts = ["## 5. Samples"]
    if not inputs.samples:
        return "\n\n".join(parts + [_unavailable("generate")])
    prompt = inputs.samples[0]["prompt"]
    of_prompt = [r for r in inputs.samples if r["prompt"] == prompt]
    index = min(r["sample"] for r in of_prompt)
    chosen = {r["model"]: r for r in of_prompt if r["sample"] == index}
    parts.append(f"First prompt, sample {index}, completion of each model (prompt not repeated):")
    parts.append(_fenced(prompt))
    for model in _ordered_models(chosen):
        row = chosen[model]
        settings = row.get("settings", {})
        detail = ", ".join(f"{k} {v}" for k, v in settings.items() if k in ("temperature", "top_k", "top_p"))
        parts.append(f"**{model}** ({row['new_tokens']} new tokens, seed {row['seed']}"
                     + (f", {detail}" if detail else "") + "):")
        parts.append(_fenced(row["text"]))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- whole report


REPRODUCE = """## 6. How to reproduce

`make repro` runs the whole pipeline on `params.yaml`; `dvc exp run -S train.lr=3e-5` reruns it with one \
parameter changed; `dvc plots diff` compares the curves of experiments."""


def summary_section(inputs: Inputs, c: Comparison | None) -> str:
    lines = []
    if c is not None:
        lines += [headline_sentence(c), compute_sentence(c, inputs)]
    if inputs.eval is not None and (sentence := eval_sentence(inputs.eval)):
        lines.append(sentence)
    if inputs.sweep is not None and inputs.sweep["runs"]:
        lines.append(sweep_sentences(inputs.sweep)[0])
    body = "\n".join(f"- {line}" for line in lines) if lines else "_No results yet: no stage has run._"
    return "## Summary\n\n" + body


def build_report(root: Path, plots_dir: Path, image_link: str = "../plots/report") -> str:
    """Read the metrics under `root`, write the charts into `plots_dir`, return the markdown.

    `image_link` is the charts' folder as seen from the report's final location.
    """
    inputs = load_inputs(root)
    comparison = compare_runs(inputs)
    sections = [
        "# transferlm: what transfer learning saves",
        summary_section(inputs, comparison),
        dataset_section(inputs),
        comparison_section(inputs, comparison, plots_dir, image_link),
        sweep_section(inputs, plots_dir, image_link),
        eval_section(inputs),
        samples_section(inputs),
        REPRODUCE,
    ]
    log.info("report built; charts: %s", ", ".join(sorted(p.name for p in plots_dir.glob("*.png"))) or "none")
    return "\n\n".join(sections) + "\n"
