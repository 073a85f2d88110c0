"""params.yaml is validated once, up front: every bad value is named in a one-line error."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transferlm.errors import ParamError
from transferlm.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_params_are_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.train.optimizer in params.sweep.optimizers
    # every field is spelled out in params.yaml, so `dvc exp run -S` can set each one
    for section in dataclasses.fields(Params):
        fields = {f.name for f in dataclasses.fields(getattr(params, section.name))}
        assert set(raw[section.name]) == fields, section.name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"optimizer": "lamb"}}, "train.optimizer: unknown value 'lamb'; valid: adamw, adam, sgd, rmsprop, adafactor"),
        ({"train": {"lr": -1}}, "train.lr: must be in (0, 10), got -1.0"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number, got 'fast'"),
        ({"train": {"max_steps": 1.5}}, "train.max_steps: expected an integer, got 1.5"),
        ({"train": {"lr_schedule": "step"}}, "train.lr_schedule: unknown value 'step'"),
        ({"train": {"precision": "fp8"}}, "train.precision: unknown value 'fp8'"),
        ({"train": {"batchsize": 8}}, "train.batchsize: unknown parameter; valid:"),
        ({"trian": {}}, "trian: unknown parameter; valid:"),
        ({"clean": {"unicode": "yes"}}, "clean.unicode: expected true or false, got 'yes'"),
        ({"tokenize": {"val_fraction": 1.0}}, "tokenize.val_fraction: must be between 0 and 1"),
        ({"sweep": {"optimizers": ["adamw", "sgdd"]}}, "sweep.optimizers[1]: unknown value 'sgdd'"),
        ({"sweep": {"lrs": []}}, "sweep.lrs: needs at least one learning rate"),
        ({"fetch": {"corpus": []}}, "fetch.corpus: needs at least one source"),
        ({"fetch": {"corpus": [{"source": "x.txt", "sha256": "abc"}]}}, "fetch.corpus[0].sha256: must be 64 hex digits"),
        ({"generate": {"top_p": 0}}, "generate.top_p: must be in (0, 1]"),
        ({"evaluate": {"copy_ngram": 1}}, "evaluate.copy_ngram: must be >= 2"),
    ],
)
def test_bad_values_are_named(raw, message):
    with pytest.raises(ParamError) as info:
        parse_params(raw)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_numbers_written_as_yaml_strings_are_accepted():
    # YAML 1.1 reads 3e-5 (no dot) as a string; `dvc exp run -S train.lr=3e-5` must still work.
    assert parse_params({"train": {"lr": "3e-5"}}).train.lr == 3e-5


def test_a_stage_refuses_bad_params_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  optimizer: lamb\n")
    proc = subprocess.run([sys.executable, ROOT / "stages/train.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: train.optimizer: unknown value 'lamb'; valid: adamw, adam, sgd, rmsprop, adafactor"
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]
