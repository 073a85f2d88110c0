"""The report's findings, in words generated from the numbers: what pretraining saves (compute, data),
and how each optimizer and learning rate behaves. Every sentence states a measured number with its
spread, or a bound that says it is one; an extrapolation says how far past the data it reaches.
"""

from __future__ import annotations

import math

from transferlm.report import charts
from transferlm.report.fmt import (
    fmt_bpb,
    fmt_flops,
    fmt_int,
    fmt_loss,
    fmt_ratio,
    fmt_seconds,
    fmt_short,
    image,
    num,
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
    head = (f"After {fmt_flops(b['max_compute'])} FLOPs ({fmt_ratio(k)} the comparison budget), the best "
            f"from-scratch model reached a held-out loss of **{fmt_loss(b['scratch_loss'])}**")
    if b["at_start"]:
        text = (f"{head}; the base model was already below that before any fine-tuning "
                f"({fmt_loss(fr['zero_shot_loss'])}), so no fine-tuning compute at all was needed to match it")
    elif b["ratio"] is not None:
        text = (f"{head}; the fine-tune was below it after {fmt_flops(b['finetune_compute'])} FLOPs, so from "
                f"scratch needs **more than {fmt_ratio(b['ratio'])}** the compute (measured)")
    else:
        text = f"{head}; the fine-tune never got that low within the comparison budget (scratch wins there)"
    lower = fr.get("final_loss_ratio_lower_bound")
    if lower:
        text += (f". To reach the fine-tune's loss at the comparison budget ({fmt_loss(fr['finetune_final_loss'])}), "
                 f"scratch needs **more than {fmt_ratio(lower)}** that compute: no scratch run got there")
    return text + "."


def time_sentence(fr: dict, zero: dict | None) -> str | None:
    """Wall-clock, on the machine the run was on: the fine-tune's time to pass the best scratch model."""
    t = fr.get("time")
    if not t:
        return None
    where = f"On {(zero or {}).get('cpu', 'this machine')} ({(zero or {}).get('cores', '?')} cores)"
    passed, best = t["finetune_seconds_to_pass_it"], fmt_loss(t["best_scratch_loss"])
    scratch = (f"the {t['scratch_runs']} from-scratch runs trained for **{fmt_seconds(t['scratch_seconds'])}** in "
               f"all and got no lower")
    whole = f"the fine-tune's whole run took {fmt_seconds(t['finetune_seconds'])}"
    ft = fr.get("finetune", {})
    if ft.get("best_val_loss") is not None:
        whole += f" and ended at {fmt_loss(ft['best_val_loss'])}"
    if passed == 0:  # the base model, before any training, is already below every scratch run
        return (f"{where}, the base model was below the best from-scratch model's held-out loss ({best}) before "
                f"any training (0 s), while {scratch}; {whole}.")
    if passed is None:
        return f"{where}, the fine-tune never passed the best from-scratch model's held-out loss ({best}); {whole}."
    return f"{where}, the fine-tune passed the best from-scratch model's held-out loss ({best}) after " \
           f"**{fmt_seconds(passed)}** of training, while {scratch}; {whole}."


def extrapolation_sentence(fr: dict) -> str | None:
    ex = fr.get("extrapolation")
    if not ex:
        return None
    limit = f"{fmt_ratio(ex['limit_over_finetune'])} the comparison budget (30× the largest scratch budget)"
    if ex["fit"] is None:
        return "Too few frontier points for a fit; only the measured bound above is stated."
    fit = f"A power law fitted to the frontier ({ex['points']} points, {ex['fit']}, R² {ex['r2']:.3f})"
    if ex["compute"] is None:
        return (f"{fit} does not reach the fine-tune's loss within {limit}: scratch would need more than "
                f"that, an extrapolated bound (the fit is not read further).")
    ratio = ex["compute"] / fr["finetune_flops"]
    spread = (f"{fmt_ratio(ex['low'] / fr['finetune_flops'])}–{fmt_ratio(ex['high'] / fr['finetune_flops'])} over "
              f"{ex['refits']} refits" if ex["low"] else "some refits do not reach it within the limit")
    return (f"{fit} reaches the fine-tune's loss at about {fmt_ratio(ratio)} the comparison budget "
            f"({spread}): an extrapolation {fmt_ratio(ex['compute'] / fr['scratch_max_flops'])} past the largest "
            f"measured scratch budget (limit: {limit}).")


def pretraining_sentence(fr: dict) -> str | None:
    pre = fr.get("pretraining")
    if not pre:
        return None
    return (f"For scale, pretraining the base model cost about 6 × {fmt_short(pre['parameters'])} parameters × "
            f"{pre['tokens']:.0e} tokens = {fmt_flops(pre['flops'])} FLOPs ({pre['source']}): "
            f"{fmt_ratio(pre['flops'] / fr['finetune']['flops'])} the whole fine-tune. Fine-tuning reuses that "
            f"compute; the comparison above does not count it.")


def compute_section(fr: dict | None, zero: dict | None, plots_dir, link: str) -> str:
    parts = ["## 1. What pretraining saves: compute"]
    if fr is None:
        return "\n\n".join(parts + [unavailable("transfer")])
    ft, bpt = fr["finetune"], (zero or {}).get("bytes_per_token")
    parts.append(
        f"The fine-tune ({ft['optimizer']}, lr {ft['lr']:g}) ran {fmt_int(ft['steps'])} steps "
        f"({fmt_int(ft['tokens'])} tokens, {fmt_flops(ft['flops'])} FLOPs, {fmt_seconds(ft['seconds'])})"
        + (", early-stopped" if ft.get("stopped_early") else "") + f"; its best held-out loss came at step "
        f"{ft['best_step']}, and those weights are the model saved. The comparison with models of the same family "
        f"trained from random weights on the same data and tokenizer is made at a stated **comparison budget**: the "
        f"fine-tune's FLOPs after its first {ft['compare_steps']} steps ({fmt_flops(fr['finetune_flops'])}). Each "
        f"scratch size trained for that budget, and the best of them (`{fr['best_scratch_size']}`) again for "
        f"{fmt_ratio(fr['scratch_max_over_finetune'])} it. The fine-tune's curve is measured at every FLOP count, so "
        f"a bound at this budget holds at any other.")
    rows = [[f"`{r['size']}`", fmt_short(r["parameters"]), f"{r['lr']:g}", fmt_int(r["steps"]), fmt_int(r["tokens"]),
             fmt_flops(r["flops"]), fmt_seconds(r["seconds"]), fmt_loss(r["final_val_loss"]),
             fmt_bpb(r["final_val_loss"], bpt)] for r in fr["ladder"]]
    long = fr["scratch_long"]
    rows.append([f"`{fr['best_scratch_size']}`, long", "", "", fmt_int(long["steps"]), fmt_int(long["tokens"]),
                 fmt_flops(long["flops"]), fmt_seconds(long["seconds"]), fmt_loss(long["final_val_loss"]),
                 fmt_bpb(long["final_val_loss"], bpt)])
    rows.append([f"**fine-tune, first {ft['compare_steps']} steps**", fmt_short(ft["parameters"]), f"{ft['lr']:g}",
                 fmt_int(ft["compare_steps"]), fmt_int(ft["tokens"] * ft["compare_steps"] / ft["steps"]),
                 fmt_flops(fr["finetune_flops"]), "", f"**{fmt_loss(ft['compare_loss'])}**",
                 fmt_bpb(ft["compare_loss"], bpt)])
    rows.append([f"**fine-tune, whole run** (best at step {ft['best_step']})", "", "", fmt_int(ft["steps"]),
                 fmt_int(ft["tokens"]), fmt_flops(ft["flops"]), fmt_seconds(ft["seconds"]),
                 f"**{fmt_loss(ft['best_val_loss'])}**", fmt_bpb(ft["best_val_loss"], bpt)])
    parts.append(table(["model", "parameters", "lr", "steps", "tokens", "FLOPs", "time", "held-out loss",
                        "bits per byte"], rows))
    parts.append("**Measured bound.** " + compute_sentence(fr))
    for sentence in (time_sentence(fr, zero), extrapolation_sentence(fr), pretraining_sentence(fr)):
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


def _data_needed(r: dict) -> str:
    if r["data_multiplier"]:
        return f"about {fmt_int(r['scratch_tokens_needed'])} ({fmt_ratio(r['data_multiplier'])}, interpolated)"
    if r["data_multiplier_more_than"]:
        return (f"more than {fmt_int(r['scratch_tokens_needed_more_than'])} "
                f"(> {fmt_ratio(r['data_multiplier_more_than'])}, a bound)")
    if r["data_multiplier_at_most"]:
        return (f"at most {fmt_int(r['scratch_tokens_needed_at_most'])} "
                f"(≤ {fmt_ratio(r['data_multiplier_at_most'])}, a bound)")
    return "–"


def data_sentence(rows: list[dict]) -> str | None:
    """The strongest statement the shares support: the smallest share's measured ratio or bound."""
    r = rows[0]
    reach = f"fine-tuned on {fmt_int(r['finetune_tokens_available'])} tokens it reaches {fmt_loss(r['finetune_loss'])}"
    if r["data_multiplier_more_than"]:
        return (f"{reach.capitalize()}; scratch does not reach that with all "
                f"{fmt_int(r['scratch_tokens_needed_more_than'])} tokens it was given: pretraining is worth "
                f"**more than {fmt_ratio(r['data_multiplier_more_than'])}** the data here (a bound).")
    if r["data_multiplier"]:
        return (f"{reach.capitalize()}; scratch needs about {fmt_int(r['scratch_tokens_needed'])} tokens for that "
                f"(interpolated between the shares it was measured on): **{fmt_ratio(r['data_multiplier'])}** the "
                f"data, an effective data transferred of {fmt_int(r['effective_data_transferred'])} tokens.")
    return None


def data_section(fr: dict | None, zero: dict | None, plots_dir, link: str) -> str:
    parts = ["## 2. What pretraining saves: data"]
    if fr is None:
        return "\n\n".join(parts + [unavailable("transfer")])
    bpt = (zero or {}).get("bytes_per_token")
    rows = [[f"{r['fraction']:g}", fmt_int(r["finetune_tokens_available"]), fmt_loss(r["finetune_loss"]),
             fmt_bpb(r["finetune_loss"], bpt), fmt_loss(r["scratch_loss_same_data"]),
             fmt_bpb(r["scratch_loss_same_data"], bpt), _data_needed(r)] for r in fr["data_efficiency"]]
    parts.append("The fine-tune and the best scratch size, each trained to its best on a share of the training "
                 "split: on the small shares for several epochs, early-stopped on the held-out loss (section 3); on "
                 "the whole split, the fine-tune's best point and the best scratch size's longest run. Effective data "
                 "transferred (Hernandez et al. 2021): how much training data the scratch model needs to match the "
                 "fine-tune's best loss, interpolated (on log data) between the shares that bracket it, and a bound "
                 "where none do; never extrapolated.")
    parts.append(table(["share", "training tokens", "fine-tune best loss", "bpb", "scratch best loss, same data",
                        "bpb", "scratch needs (tokens)"], rows))
    if sentence := data_sentence(fr["data_efficiency"]):
        parts.append(sentence)
    charts.plot_data_efficiency(fr["data_efficiency"], fr["zero_shot_loss"], plots_dir / "data_efficiency.png")
    parts.append(image("Data efficiency", link, "data_efficiency.png"))
    return "\n\n".join(parts)


def epochs_sentence(label: str, tokens: int, e: dict) -> str:
    text = (f"**{label}** on {fmt_int(tokens)} tokens: held-out loss best after epoch {e['best_epoch']:.1f} "
            f"({fmt_loss(e['best_loss'])})")
    if e["overfit"] and e["overfit"] > 0:
        text += (f", then {e['overfit']:.3f} nats worse by epoch {e['epochs_run']:.1f}"
                 + (", where early stopping ended it" if e["stopped_early"] else ""))
    else:
        text += f", still improving at the last epoch run ({e['epochs_run']:.1f}): more epochs would help"
    return text + "."


def epochs_section(fr: dict | None, zero: dict | None, plots_dir, link: str) -> str:
    parts = ["## 3. Epochs and early stopping"]
    if fr is None or not fr.get("epochs"):
        return "\n\n".join(parts + [unavailable("transfer")])
    bpt = (zero or {}).get("bytes_per_token")
    tokens = {f"{r['fraction']:g}": r["finetune_tokens_available"] for r in fr["data_efficiency"]}
    labels = {"finetune": "fine-tune", "scratch": f"scratch `{fr['best_scratch_size']}`"}
    parts.append("On shares small enough that several epochs fit the budget, each model trains for up to the "
                 "epoch cap with a held-out loss after every epoch, stops after `train.patience` epochs without a new "
                 "best, and keeps its best epoch's weights:")
    rows, sentences = [], []
    for share, models in fr["epochs"].items():
        key = f"{float(share):g}"
        for model, e in models.items():
            rows.append([key, labels[model], f"{e['epochs_run']:.1f}", f"{e['best_epoch']:.1f}",
                         fmt_loss(e["best_loss"]), fmt_bpb(e["best_loss"], bpt), fmt_loss(e["last_loss"]),
                         f"{num(e['overfit']):+.3f}"])
            sentences.append(epochs_sentence(f"{labels[model].capitalize()}, share {key}", tokens.get(key, 0), e))
    parts.append(table(["share", "model", "epochs run", "best epoch", "best loss", "bpb", "last loss",
                        "last - best"], rows))
    parts += sentences
    charts.plot_epochs({f"{labels[m]}, share {float(f):g}": e["curve"] for f, ms in fr["epochs"].items()
                        for m, e in ms.items()}, fr["zero_shot_loss"], plots_dir / "epochs.png")
    parts.append(image("Held-out loss against epochs", link, "epochs.png"))
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
        text += ". " + lr_find_sentence(o, finder)
    return text + "."


LR_FIND_GOAL = 3.0  # a suggestion within 3x of the grid's best lr counts as finding it (the grid steps 10x)


def _times(ratio: float) -> str:
    return fmt_ratio(ratio) if ratio >= 1 else f"1/{fmt_ratio(1 / ratio)}"


def lr_find_sentence(o: dict, finder: dict | None) -> str:
    """The range test's valley reading beside the grid's best lr, the other two readings, and its blow-up."""
    ratio = o["lr_find_suggestion"] / o["best_lr"]
    within = max(ratio, 1 / ratio) <= LR_FIND_GOAL
    text = (f"The lr range test's valley is at {o['lr_find_suggestion']:.2g}, {_times(ratio)} the grid's best: "
            + ("**within 3×**" if within else "**not within 3×**"))
    others = [f"{name} {o[key]:.2g}" for name, key in (("steepest descent", "lr_find_steepest"),
                                                       ("minimum/10", "lr_find_min_over_10")) if o.get(key)]
    if others:
        text += f" (other readings: {', '.join(others)})"
    if not within:
        text += f"; {lr_find_miss_reason(o, ratio)}"
    if finder and finder["blows_up_at"]:
        first_div = min(o["diverges_at"], default=None)
        text += (f". Its loss blew up from lr {finder['blows_up_at']:.2g}"
                 + (f" (the grid's runs diverged from {first_div:g})" if first_div else ""))
    return text


def lr_find_miss_reason(o: dict, ratio: float) -> str:
    """Why a suggestion missed, from the numbers at hand: where the grid's best sits, and which way it missed."""
    grid = sorted([*o["improves_at"], *o["worse_at"], *o["diverges_at"]])
    if grid and o["best_lr"] in (grid[0], grid[-1]):
        return (f"the grid's best is the grid's {'lowest' if o['best_lr'] == grid[0] else 'highest'} lr, so the "
                f"grid's own optimum may lie beyond it")
    return (f"the test reads one run whose lr rises every step, while the grid ranks the held-out loss after "
            f"{o['best_lr_steps']} steps at one lr, and here the test points {'lower' if ratio < 1 else 'higher'}")


def lr_find_summary(optimizers: dict) -> str | None:
    tested = {n: o for n, o in optimizers.items() if o.get("lr_find_suggestion")}
    if not tested:
        return None
    hits = [n for n, o in tested.items()
            if max(o["lr_find_suggestion"] / o["best_lr"], o["best_lr"] / o["lr_find_suggestion"]) <= LR_FIND_GOAL]
    return (f"**LR range tests** (fastai's `lr_find`: lr rising exponentially every step, loss smoothed by a "
            f"debiased moving average, beta 0.98, stopped where it blew up; suggestion: the valley): the suggestion "
            f"is within 3× of the grid's best lr for **{len(hits)} of {len(tested)}** optimizers"
            + (f" ({', '.join(hits)})" if hits else "") + ".")


def study_section(st: dict | None, zero: dict | None, plots_dir, link: str) -> str:
    parts = ["## 4. Optimizers, learning rates and batch size"]
    if st is None:
        return "\n\n".join(parts + [unavailable("study_summary")])
    steps = st["rung_steps"]
    bpt = (zero or {}).get("bytes_per_token")
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
    if summary := lr_find_summary(st["optimizers"]):
        parts.append(summary)
    if st.get("lr_find_rows"):
        marks = {n: {"suggestion": o.get("lr_find_suggestion"), "grid_best": o["best_lr"]}
                 for n, o in st["optimizers"].items()}
        charts.plot_lr_find(st["lr_find_rows"], marks, plots_dir / "lr_find.png")
        parts.append(image("LR range tests", link, "lr_find.png"))
    if st.get("batch_size"):
        parts.append(batch_size_paragraph(st["batch_size"], bpt))
    return "\n\n".join(parts)


def batch_size_paragraph(b: dict, bpt: float | None) -> str:
    rows = [[str(r["batch_size"]), f"{r['lr']:.3g}", fmt_int(r["steps"]), fmt_int(r["tokens"]),
             fmt_seconds(r["seconds"]), f"{r['tokens_per_s']:,.0f}", fmt_loss(r["final_val_loss"]),
             fmt_bpb(r["final_val_loss"], bpt), fmt_loss(b["loss_at_equal_time"].get(str(r["batch_size"])))]
            for r in b["runs"]]
    head = (f"**Batch size at equal tokens.** The recommended optimizer at {len(rows)} batch sizes, each on the same "
            f"training tokens, lr scaled from {b['base_lr']:.3g} at batch {b['base_batch_size']} by the "
            f"{b['rule']} rule. Loss at equal time: the last held-out loss each had measured by "
            f"{fmt_seconds(b['equal_time_seconds'])}, when the quickest finished.")
    verdict = (f"Best at equal tokens: batch **{b['best_at_equal_tokens']}**; best at equal time: batch "
               f"**{b['best_at_equal_time']}**.")
    return "\n\n".join([head, table(["batch", "lr", "steps", "tokens", "wall-clock", "tokens/s", "final loss",
                                       "bpb", "loss at equal time"], rows), verdict])
