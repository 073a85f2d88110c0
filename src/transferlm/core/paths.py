"""Where every pipeline artifact lives: the one place a path is spelled (dvc.yaml spells them too)."""

import os
from pathlib import Path

RAW = Path("data/raw")
CLEAN = Path("data/clean")
CLEAN_DOCUMENTS = CLEAN / "documents.jsonl"  # the clean stage's documents, one JSON line each
TOKENIZED = Path("data/tokenized")
REVIEW_KEY = Path("data/review_key.csv")
# The blind review's samples with their models: outside reports/, like the key, so the reviewer stays blind.
REVIEW_SAMPLES = Path("data/review_samples.jsonl")

BASE_MODEL = Path("models/base")
FINETUNED_MODEL = Path("models/finetuned")
SCRATCH_MODELS = Path("models/scratch")  # one folder per ladder size: models/scratch/<size>
# The models that generate and evaluate compare, in this order. "scratch" is the from-scratch ladder's
# best size (transferlm.core.artifacts.compared_models picks it).
MODELS = ("base", "finetuned", "scratch")

CHECKPOINTS = Path("checkpoints")  # resumable training state; outside DVC's outputs, git-ignored

METRICS = Path("metrics")
FETCH_METRICS = METRICS / "fetch.json"  # what was fetched: corpus sources and the base model
REVIEW_METRICS = METRICS / "review.json"  # the blind review's scores (written from the reviewers' sheets)
CLEAN_METRICS = METRICS / "clean.json"  # what each cleaning rule changed
TOKENIZE_METRICS = METRICS / "tokenize.json"  # the split: method and held-out documents
EVAL_METRICS = METRICS / "eval.json"  # perplexity and sample measures per model
TIMINGS = METRICS / "timings"  # each stage's wall-clock in its latest `dvc repro` (not a DVC output)
PLOTS = Path("plots")
# Each training run writes a folder in dvclive's layout (transferlm.core.curves): metrics.json, params.yaml, plots/.
FINETUNE_RUN = METRICS / "finetune"  # the headline fine-tune
LADDER = METRICS / "ladder"  # scratch runs, one folder per size, on the fine-tune's FLOPs budget
SCRATCH_LONG = METRICS / "scratch_long"  # the best size again on scratch.long_budget
SCRATCH_SEEDS = METRICS / "scratch_seeds"  # the best size with other seeds
FRACTIONS = METRICS / "fractions"  # fine-tune and best scratch size on a fraction of the training split
ZEROSHOT = METRICS / "zeroshot.json"  # the base model's held-out loss before any training
STUDY = METRICS / "study"  # the optimizer x lr study: rungs, lr range tests, seeds
STUDY_ROUND0 = STUDY / "round0"  # every grid point on the shortest budget
STUDY_HALVING = STUDY / "halving"  # the later rounds of successive halving, round<k>/<point>
STUDY_FINALISTS = STUDY_HALVING / "finalists.json"  # the points the seed runs repeat
STUDY_SEEDS = STUDY / "seeds"  # the finalists again, one folder per seed
STUDY_LR_FIND = STUDY / "lr_find"  # one lr range test per optimizer
STUDY_BATCH = STUDY / "batch"  # the recommended optimizer at each batch size, one folder per size
STUDY_BATCH_SUMMARY = STUDY_BATCH / "summary.json"  # the batch sizes at equal tokens and equal time
STUDY_SUMMARY = METRICS / "study.json"  # the study's grid, rounds, finalists and findings
RECOMMENDED = STUDY / "recommended.json"  # the study's choice, read by `train.lr: auto`
FRONTIER = METRICS / "frontier.json"  # compute saved, data efficiency, best scratch model

SAMPLES_JSONL = Path("reports/samples.jsonl")
SAMPLES_MD = Path("reports/samples.md")
REVIEW_PAGE = Path("reports/review")  # the blind review page and sheet
REPORT = Path("reports/report.md")
REPORT_PLOTS = PLOTS / "report"


def point_name(optimizer: str, lr: float, seed: int | None = None) -> str:
    """A study run's folder name. Must match dvc.yaml's `${item.optimizer}-${item.lr}`: DVC renders floats
    with Python's str()."""
    return f"{optimizer}-{lr}" + (f"-seed{seed}" if seed is not None else "")


def grid_names(optimizers: list[str], lrs: list[float]) -> list[str]:
    """Round 0's folder names: every point of the optimizer x lr grid."""
    return [point_name(o, lr) for o in optimizers for lr in lrs]


def scratch_model(size: str) -> Path:
    return SCRATCH_MODELS / size


def cache_dir() -> Path:
    """$TRANSFERLM_CACHE, else $XDG_CACHE_HOME/transferlm, else ~/.cache/transferlm."""
    if os.environ.get("TRANSFERLM_CACHE"):
        return Path(os.environ["TRANSFERLM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "transferlm"
