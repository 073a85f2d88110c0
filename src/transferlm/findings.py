"""The report's findings, in words generated from the numbers: what pretraining saves (compute, data),
and how each optimizer and learning rate behaves. Every sentence states a measured number with its
spread, or a bound that says it is one; an extrapolation says how far past the data it reaches.
"""

from __future__ import annotations

import math

from transferlm import charts
from transferlm.reportfmt import (
    fmt_flops,
    fmt_int,
    fmt_loss,
    fmt_ratio,
    fmt_seconds,
    fmt_short,
    image,
    table,
    unavailable,
)


def _pm(stats: dict | None) -> str:
    if not stats or stats.get("mean") is None or not math.isfinite(stats["mean"]):
        return "–"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f} ({stats['seeds']} seeds)"


# ------------------------------------------------------------------------------------- compute saved


def compute_sentence(fr: dict) -> str:
    """The report's first statement: the measured bound."""
    b, ft_flops = fr["bound"], fr["finetune_flops"]
    k = b["max_compute"] / ft_flops
    head = (f"After {fmt_flops(b['max_compute'])} FLOPs ({fmt_ratio(k)} the fine-tune's whole budget), the best "
            f"from-scratch model reached a held-out loss of **{fmt_loss(b['scratch_loss'])}**")
    if b["at_start"]:
        text = (f"{head}; the base model was already below that before any fine-tuning "
                f"({fmt_loss(fr['zero_shot_loss'])}), so no fine-tuning compute at all was needed to match it")
    elif b["ratio"] is not None:
        text = (f"{head}; the fine-tune was below it after {fmt_flops(b['finetune_compute'])} FLOPs, so from "
                f"scratch needs **more than {fmt_ratio(b['ratio'])}** the compute (measured)")
    else:
        text = f"{head}; the fine-tune never got that low within its budget (scratch wins at this budget)"
    lower = fr.get("final_loss_ratio_lower_bound")
    if lower:
        text += (f". To reach the fine-tune's final loss ({fmt_loss(fr['finetune_final_loss'])}), scratch needs "
                 f"**more than {fmt_ratio(lower)}** the fine-tune's compute: no scratch run got there")
    return text + "."


def extrapolation_sentence(fr: dict) -> str | None:
    ex = fr.get("extrapolation")
    if not ex:
        return None
    limit = f"{fmt_ratio(ex['limit_over_finetune'])} the fine-tune's compute (30× the largest scratch budget)"
    if ex["fit"] is None:
        return "Too few frontier points for a fit; only the measured bound above is stated."
    fit = f"A power law fitted to the frontier ({ex['points']} points, {ex['fit']}, R² {ex['r2']:.3f})"
    if ex["compute"] is None:
        return (f"{fit} does not reach the fine-tune's final loss within {limit}: scratch would need more than "
                f"that, an extrapolated bound (the fit is not read further).")
    ratio = ex["compute"] / fr["finetune_flops"]
    spread = (f"{fmt_ratio(ex['low'] / fr['finetune_flops'])}–{fmt_ratio(ex['high'] / fr['finetune_flops'])} over "
              f"{ex['refits']} refits" if ex["low"] else "some refits do not reach it within the limit")
    return (f"{fit} reaches the fine-tune's final loss at about {fmt_ratio(ratio)} the fine-tune's compute "
            f"({spread}): an extrapolation {fmt_ratio(ex['compute'] / fr['scratch_max_flops'])} past the largest "
            f"measured scratch budget (limit: {limit}).")


def pretraining_sentence(fr: dict) -> str | None:
    pre = fr.get("pretraining")
    if not pre:
        return None
    return (f"For scale, pretraining the base model cost about 6 × {fmt_short(pre['parameters'])} parameters × "
            f"{pre['tokens']:.0e} tokens = {fmt_flops(pre['flops'])} FLOPs ({pre['source']}): "
            f"{fmt_ratio(pre['flops'] / fr['finetune_flops'])} the fine-tune's budget. Fine-tuning reuses that "
            f"compute; the comparison above does not count it.")


def compute_section(fr: dict | None, zero: dict | None, plots_dir, link: str) -> str:
    parts = ["## 1. What pretraining saves: compute"]
    if fr is None:
        return "\n\n".join(parts + [unavailable("transfer")])
    ft = fr["finetune"]
    parts.append(
        f"The fine-tune ({ft['optimizer']}, lr {ft['lr']:g}, {fmt_int(ft['steps'])} steps, {fmt_int(ft['tokens'])} "
        f"tokens, {fmt_flops(ft['flops'])} FLOPs, {fmt_seconds(ft['seconds'])}) against models of the same family "
        f"trained from random weights on the same data and tokenizer, each for the fine-tune's FLOPs, and the best "
        f"of them (`{fr['best_scratch_size']}`) again for {fmt_ratio(fr['scratch_max_over_finetune'])} that budget:")
    rows = [[f"`{r['size']}`", fmt_short(r["parameters"]), f"{r['lr']:g}", fmt_int(r["steps"]), fmt_int(r["tokens"]),
             fmt_flops(r["flops"]), fmt_seconds(r["seconds"]), fmt_loss(r["final_val_loss"])] for r in fr["ladder"]]
    long = fr["scratch_long"]
    rows.append([f"`{fr['best_scratch_size']}`, long", "", "", fmt_int(long["steps"]), fmt_int(long["tokens"]),
                 fmt_flops(long["flops"]), fmt_seconds(long["seconds"]), fmt_loss(long["final_val_loss"])])
    rows.append(["**fine-tune**", fmt_short(ft["parameters"]), f"{ft['lr']:g}", fmt_int(ft["steps"]),
                 fmt_int(ft["tokens"]), fmt_flops(ft["flops"]), fmt_seconds(ft["seconds"]),
                 f"**{fmt_loss(ft['final_val_loss'])}**"])
    parts.append(table(["model", "parameters", "lr", "steps", "tokens", "FLOPs", "time", "held-out loss"], rows))
    parts.append("**Measured bound.** " + compute_sentence(fr))
    for sentence in (extrapolation_sentence(fr), pretraining_sentence(fr)):
        if sentence:
            parts.append(sentence)
    seeds = fr["seeds"]
    parts.append(f"Spread over seeds (final held-out loss): fine-tune {_pm(seeds['finetune'])}; best scratch size "
                 f"{_pm(seeds['best_scratch'])}." + ("" if seeds["finetune"] else
                 " The fine-tune's own config is not among the study's finalists, so its seed spread was not"
                 " measured."))
    scratch_curves = {r["size"]: r["curve"] for r in fr["ladder"] if r.get("curve")}
    if long.get("curve"):
        scratch_curves[f"{fr['best_scratch_size']} long"] = long["curve"]
    if scratch_curves:
        charts.plot_frontier(scratch_curves, fr["frontier"], fr["finetune_curve"], fr["zero_shot_loss"],
                             fr["finetune_flops"], plots_dir / "frontier.png")
        parts.append(image("Fine-tune vs the from-scratch frontier", link, "frontier.png"))
    return "\n\n".join(parts)


def data_section(fr: dict | None, plots_dir, link: str) -> str:
    parts = ["## 2. What pretraining saves: data"]
    if fr is None:
        return "\n\n".join(parts + [unavailable("transfer")])
    rows, notes = [], []
    for r in fr["data_efficiency"]:
        if r["data_multiplier"]:
            need = f"{fmt_int(r['scratch_tokens_needed'])} ({fmt_ratio(r['data_multiplier'])}, measured)"
        else:
            need = (f"more than {fmt_int(r['scratch_tokens_needed_more_than'])} "
                    f"(> {fmt_ratio(r['data_multiplier_more_than'])}, a bound)")
        rows.append([f"{r['fraction']:g}", fmt_int(r["finetune_tokens_available"]), fmt_loss(r["finetune_loss"]),
                     fmt_loss(r["scratch_loss_same_data"]), need])
    parts.append("The fine-tune and the best scratch size trained on a share of the training split (the same "
                 "step or FLOPs budget as before). Effective data transferred (Hernandez et al. 2021): how much "
                 "training data the scratch model needs to match the fine-tune's loss.")
    parts.append(table(["share", "training tokens available", "fine-tune loss", "scratch loss, same data",
                        "scratch needs (tokens)"], rows))
    smallest = fr["data_efficiency"][0]
    seen = fr["finetune"]["tokens"]
    if seen <= smallest["finetune_tokens_available"] * 1.5:
        losses = [r["finetune_loss"] for r in fr["data_efficiency"]]
        notes.append(f"At this budget the fine-tune sees only {fmt_int(seen)} training tokens, so even the smallest "
                     f"share ({fmt_int(smallest['finetune_tokens_available'])} tokens) is about all it uses: its loss "
                     f"stays between {fmt_loss(min(losses))} and {fmt_loss(max(losses))} across the shares.")
    parts += notes
    charts.plot_data_efficiency(fr["data_efficiency"], fr["zero_shot_loss"], plots_dir / "data_efficiency.png")
    parts.append(image("Data efficiency", link, "data_efficiency.png"))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------- the study


def lr_find_reading(rows: list[dict]) -> dict:
    """What one lr range test shows beyond its suggestion: where its loss blew up (smoothed loss 10% above
    its start), and how noisy it was (the spread of the raw loss before that, batch to batch)."""
    import statistics

    start = rows[0]["smoothed"]
    blown = next((r["lr"] for r in rows if r["smoothed"] > 1.1 * start), None)
    before = [r["loss"] for r in rows if blown is None or r["lr"] < blown]
    return {"blows_up_at": blown, "noise": statistics.stdev(before) if len(before) > 2 else None,
            "first_lr": rows[0]["lr"]}


def optimizer_sentence(name: str, o: dict, fastest: float, step_seconds: float, finder: dict | None = None) -> str:
    improves = ", ".join(f"{lr:g}" for lr in o["improves_at"]) or "none"
    text = (f"**{name}**: best lr **{o['best_lr']:g}** ({o['best_lr_from']}, {o['best_lr_steps']} steps, held-out "
            f"loss {fmt_loss(o['best_lr_loss'])}); beats the zero-shot model at lr {improves}")
    if o["worse_at"]:
        text += f"; worse than no training at {', '.join(f'{lr:g}' for lr in o['worse_at'])}"
    diverges = ", ".join(f"{lr:g}" for lr in o["diverges_at"])
    text += f"; diverges at {diverges}" if diverges else "; never diverged"
    slower = step_seconds / fastest
    text += (f". {step_seconds:.2f} s/step ({fmt_ratio(slower)} the fastest), so at equal wall-clock "
             f"it gets {1 / slower:.2f}× the steps" if slower > 1.02 else f". {step_seconds:.2f} s/step, "
             f"the fastest")
    if o.get("lr_find_suggestion"):
        ratio = o["lr_find_suggestion"] / o["best_lr"]
        text += (f". The lr range test suggested {o['lr_find_suggestion']:.2g} "
                 f"({fmt_ratio(ratio) if ratio >= 1 else f'1/{fmt_ratio(1 / ratio)}'} the grid's best)")
        if finder and finder["first_lr"] == o["lr_find_suggestion"] and finder["noise"]:
            text += (f", its very first lr: no valley showed, because the loss moved from batch to batch by "
                     f"{finder['noise']:.2f} nats (std), more than the lr changed it; the cheap test would not "
                     f"have found the grid's best at this budget")
        if finder and finder["blows_up_at"]:
            first_div = min(o["diverges_at"], default=None)
            text += (f". Its loss blew up from lr {finder['blows_up_at']:.2g}"
                     + (f" (the grid's runs diverged from {first_div:g})" if first_div else ""))
    return text + "."


def study_section(st: dict | None, plots_dir, link: str) -> str:
    parts = ["## 3. Optimizers and learning rates"]
    if st is None:
        return "\n\n".join(parts + [unavailable("study_summary")])
    steps = st["rung_steps"]
    optimizers = list(st["optimizers"])
    lrs = sorted({r["lr"] for r in st["grid"]})
    parts.append(
        f"{len(optimizers)} optimizers × {len(lrs)} learning rates, by successive halving: every grid point "
        f"{steps[0]} steps; each round keeps the best third and runs it again {'/'.join(map(str, steps[1:]))} steps; "
        f"the last round's runs are repeated with more seeds. Ranked by the *final* held-out loss (zero-shot: "
        f"{fmt_loss(st['start_loss'])}). A run ending above that is *worse than no training*; a run stopped for a "
        f"runaway loss is *diverged*; neither is shown as its starting loss.")
    charts.plot_study_grid(st["grid"], optimizers, lrs, plots_dir / "study_grid.png")
    parts.append(image("Study round 0", link, "study_grid.png"))
    rounds = [table(["round", "steps", "runs", "kept"],
                    [[str(k), str(steps[k]), str(len(st["grid"]) if k == 0 else len(st["rounds"][k - 1])),
                      ", ".join(f"{r['optimizer']} {r['lr']:g}" for r in st["rounds"][k]) if k < len(st["rounds"])
                      else "(finalists)"] for k in range(len(steps))])]
    parts += rounds
    rows = [[f"{f['optimizer']} {f['lr']:g}", str(f["steps"]), _pm(f), ", ".join(f"{x:.3f}" for x in f["losses"])]
            for f in sorted(st["finalists"].values(), key=lambda f: f["mean"])]
    parts.append("Finalists over seeds:")
    parts.append(table(["optimizer, lr", "steps", "final loss, mean ± std", "each seed"], rows))
    rec = st["recommended"]
    ties = st["ties_with_best"]
    parts.append(f"**Recommended: {rec['optimizer']} at lr {rec['lr']:g}** (mean {fmt_loss(rec['mean'])} ± "
                 f"{rec['std']:.3f}). " + (f"Tied with it within the seed spread: {', '.join(ties)}: the study cannot "
                 f"tell these apart." if ties else "No finalist is within the seed spread of it."))
    # Steady-state step times (first step and evaluations excluded) when the run folders are at hand.
    speed = {n: st.get("speed", {}).get(n, o["seconds_per_step"]) for n, o in st["optimizers"].items()}
    fastest = min(speed.values())
    parts.append("At equal steps the final losses above compare directly; at equal wall-clock, each optimizer's "
                 "steady step time (median over its study runs) says how many steps it gets:")
    finders = {n: lr_find_reading([r for r in st.get("lr_find_rows", []) if r["optimizer"] == n])
               for n in st["optimizers"] if any(r["optimizer"] == n for r in st.get("lr_find_rows", []))}
    parts += [optimizer_sentence(name, o, fastest, speed[name], finders.get(name))
              for name, o in st["optimizers"].items()]
    if st.get("lr_find_rows"):
        marks = {n: {"suggestion": o.get("lr_find_suggestion"), "grid_best": o["best_lr"]}
                 for n, o in st["optimizers"].items()}
        charts.plot_lr_find(st["lr_find_rows"], marks, plots_dir / "lr_find.png")
        parts.append(image("LR range tests", link, "lr_find.png"))
    return "\n\n".join(parts)
