"""params.yaml is validated once, up front: every bad value is named in a one-line error."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transferlm.core.errors import ParamError
from transferlm.core.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[3]


def test_the_shipped_params_are_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.train.optimizer == "auto" or params.train.optimizer in params.study.optimizers
    # every field is spelled out in params.yaml, so `dvc exp run -S` can set each one
    for section in dataclasses.fields(Params):
        value = getattr(params, section.name)
        if not dataclasses.is_dataclass(value):  # a top-level key such as `launch`
            assert section.name in raw, section.name
            continue
        fields = {f.name for f in dataclasses.fields(value)}
        assert set(raw[section.name]) == fields, section.name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"optimizer": "lamb"}}, "train.optimizer: unknown value 'lamb'; valid: "),
        ({"train": {"lr": -1}}, "train.lr: must be in (0, 10), got -1.0"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"max_steps": 1.5}}, "train.max_steps: expected an integer, got 1.5"),
        ({"train": {"lr_schedule": "step"}}, "train.lr_schedule: unknown value 'step'"),
        ({"train": {"precision": "fp8"}}, "train.precision: unknown value 'fp8'"),
        ({"train": {"batchsize": 8}}, "train.batchsize: unknown parameter; valid:"),
        ({"trian": {}}, "trian: unknown parameter; valid:"),
        ({"clean": {"unicode": "yes"}}, "clean.unicode: expected true or false, got 'yes'"),
        ({"tokenize": {"val_fraction": 1.0}}, "tokenize.val_fraction: must be between 0 and 1"),
        ({"study": {"optimizers": ["adamw", "sgdd"]}}, "study.optimizers[1]: unknown value 'sgdd'"),
        ({"study": {"lrs": []}}, "study.lrs: needs at least one learning rate"),
        ({"fetch": {"corpus": []}}, "fetch.corpus: needs at least one source"),
        ({"fetch": {"corpus": [{"source": "x.txt", "sha256": "abc"}]}},
         "fetch.corpus[0].sha256: must be 64 hex digits"),
        ({"generate": {"top_p": 0}}, "generate.top_p: must be in (0, 1]"),
        ({"evaluate": {"copy_ngram": 1}}, "evaluate.copy_ngram: must be >= 2"),
        # issue 12: each of these used to give a traceback or pass silently
        ({"fetch": {"timeout_s": float("inf")}}, "fetch.timeout_s: expected a finite number, got inf"),
        ({"fetch": {"max_download_mb": float("inf")}}, "fetch.max_download_mb: expected a finite number"),
        ({"fetch": {"max_download_mb": "inf"}}, "fetch.max_download_mb: expected a finite number"),
        ({"train": {"lr": float("nan")}}, "train.lr: expected a finite number, got nan"),
        ({"train": {"weight_decay": float("-inf")}}, "train.weight_decay: expected a finite number, got -inf"),
        ({"fetch": {"corpus": [{"sha256": "a" * 64}]}}, "fetch.corpus[0].source: missing (required)"),
        ({"train": {"lora_alpha": 0}}, "train.lora_alpha: must be > 0, got 0"),
        ({"train": {"lora_alpha": -8}}, "train.lora_alpha: must be > 0"),
        ({"train": {"warmup_steps": 11, "max_steps": 10}},
         "train.warmup_steps: must be between 0 and train.max_steps (10), got 11"),
        ({"study": {"lrs": [1.0e-3, 1.0e-3]}}, "study.lrs: a learning rate is repeated"),
        ({"study": {"optimizers": ["sgd", "sgd"]}}, "study.optimizers: an optimizer is repeated"),
        ({"study": {"lrs": [1, 0.1]}}, "study.lrs[0]: write learning rates in a list as YAML floats with a dot"),
        ({"study": {"lrs": [0.1, "3e-5"]}}, "study.lrs[1]: write learning rates in a list as YAML floats"),
        ({"fetch": {"corpus": ["data/raw/input.txt"]}},
         "fetch.corpus[0]: data/raw/input.txt is inside the stage output data/raw/"),
        ({"fetch": {"corpus": ["corpus/", "models/finetuned"]}},
         "fetch.corpus[1]: models/finetuned is inside the stage output models/"),
        ({"fetch": {"corpus": ["metrics/*.json"]}},
         "fetch.corpus[0]: metrics/*.json is inside the stage output metrics/"),
        ({"fetch": {"corpus": ["checkpoints/x.txt"]}},
         "fetch.corpus[0]: checkpoints/x.txt is inside the stage output checkpoints/"),
        ({"fetch": {"corpus": ["."]}}, "fetch.corpus[0]: . contains the stage output data/raw/"),
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
    proc = subprocess.run([sys.executable, ROOT / "stages/clean.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: train.optimizer: unknown value 'lamb'; valid: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_a_corpus_outside_the_outputs_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for source in ["corpus/", "data/input.txt", "data/raw-copy/x.txt", "input.txt", "https://h/data/raw/x.txt",
                   "hf:owner/metrics", str(tmp_path.parent / "elsewhere")]:
        assert parse_params({"fetch": {"corpus": [source]}}).fetch.corpus[0].source == source


def test_a_corpus_reached_through_a_link_into_an_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "corpus").symlink_to(tmp_path / "data/raw")
    with pytest.raises(ParamError, match=r"^fetch.corpus\[0\]: corpus is inside the stage output data/raw/"):
        parse_params({"fetch": {"corpus": ["corpus"]}})


def test_integer_train_lr_is_accepted_as_a_float():
    # train.lr names no folder, so `lr: 1` simply means 1.0 there; only lr lists (a DVC matrix) are strict.
    assert parse_params({"train": {"lr": 1}}).train.lr == 1.0


def test_non_utf8_params_file_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    data = "train:\n  optimizer: adamw  # caf\u00e9\n".encode("latin-1")
    params.write_bytes(data)
    with pytest.raises(ParamError) as info:
        load_params(params)
    offset = data.index(b"\xe9")
    assert str(info.value) == f"{params}: not UTF-8 (byte 0xe9 at offset {offset}); re-save it as UTF-8"


def test_reliability_doc_states_how_many_bad_inputs_are_tried_and_each_names_an_existing_test():
    import re

    doc = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Bad input and what the user sees"):]
    lines = section.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| bad input"))
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    stated = re.search(r"^(\d+) bad inputs are tried in all", section, re.M)
    assert stated and int(stated[1]) == len(rows)
    for row in rows:
        tests = re.findall(r"`(test_\w+\.py)`", row.rsplit("|", 2)[-2])
        assert tests and all(any((ROOT / "tests").rglob(t)) for t in tests), row  # in whichever folder of tests/


# --- issue 25: hostile params files and values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"max_steps": 10**400}}, "train.max_steps: expected a number of sensible size, got 1000000"),
        ({"train": {"weight_decay": 10**400}}, "train.weight_decay: expected a number of sensible size"),
        ({"fetch": {"max_download_mb": 1e308}},
         "fetch.max_download_mb: must be > 0 and at most 1e+06 (1 TB), got 1e+308"),
        ({"fetch": {"timeout_s": 1e308}}, "fetch.timeout_s: must be > 0 and at most 604800 (a week), got 1e+308"),
        ({"train": {"seed": -1}}, "train.seed: must be between 0 and 4294967295, got -1"),
        ({"tokenize": {"seed": 2**32}}, "tokenize.seed: must be between 0 and 4294967295, got 4294967296"),
        ({"study": {"seeds": [1, -2]}}, "study.seeds[1]: must be between 0 and 4294967295, got -2"),
        ({"train": {"max_steps": 10**9, "warmup_steps": 0}}, "train.max_steps: must be at most 1,000,000"),
        ({"train": {"eval_every": 10**12}}, "train.eval_every: must be at most 1,000,000"),
        ({"study": {"lr_find_steps": 10**9}}, "study.lr_find_steps: must be at most 1,000,000"),
        ({"model": {"base": "models/x"}}, "model.base: models/x is inside the stage output models/, which the "
                                          "pipeline deletes and rewrites; keep the model elsewhere"),
        ({"model": {"base": "models/base@main"}}, "model.base: models/base@main is inside the stage output models/"),
        ({"fetch": {"corpus": ["hf:./data/raw"]}},
         "fetch.corpus[0]: hf:./data/raw is inside the stage output data/raw/"),
        ({"fetch": {"corpus": ["hf:metrics:train:text"]}},
         "fetch.corpus[0]: hf:metrics:train:text is inside the stage output metrics/"),
        ({"train": {"optimizer": "x" * 10**6}}, "train.optimizer: unknown value 'xxxxxxxx"),
        ({"train": {"lr": [[[[[[1]]]]]] * 1000}},
         "train.lr: expected a number, got [[[...]], [[...]], [[...]], [[...]], ...]"),
    ],
)
def test_hostile_values_are_one_short_line(raw, message):
    with pytest.raises(ParamError) as info:
        parse_params(raw)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "line 1: more than 100,000 values once its aliases (*name) are expanded"),
        ("train:\n  lr: " + "[" * 20_000 + "]" * 20_000 + "\n", "line 2: nested more than 20 levels deep"),
        ("train:\n  lr: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n", "line 2: nested more than 20 levels deep"),
        ("train:\n  max_steps: " + "9" * 5000 + "\n", "line 2: a number of 5,000 characters, more than 40: '999"),
        ("train:\n  max_steps: " + "9" * 400 + "\n", "line 2: a number of 400 characters, more than 40: '999"),
        ("train:\n  optimizer: " + "x" * 200_000 + "\n", "line 2: a value of 200,000 characters, more than 100,000"),
        ("train:\n  lr: &a [*a]\n", "line 2: a value contains itself through an alias"),
        ("train:\n  max_steps: 10\n  seed: 1\n  max_steps: 20\n",
         "line 4: the key 'max_steps' is repeated (first on line 2); keep one"),
        ("train:\n  seed: 1\nclean: {}\ntrain:\n  seed: 2\n", "line 4: the key 'train' is repeated (first on line 1)"),
    ],
)
def test_hostile_params_files_are_refused_in_one_short_line_at_once(tmp_path, text, message):
    import time

    params = tmp_path / "params.yaml"
    params.write_text(text)
    started = time.monotonic()
    with pytest.raises(ParamError) as info:
        load_params(params)
    assert time.monotonic() - started < 2  # the alias bomb took 16 s and printed a 722 MB line
    assert str(info.value).startswith(f"{params}: {message}")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_anchors_and_merge_keys_within_the_limits_still_work(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("generate: &g\n  seed: 7\nevaluate:\n  <<: *g\n  seed: 8\ntokenize:\n  seed: *seed\n"
                      .replace("*seed", "3"))
    loaded = load_params(params)
    assert (loaded.generate.seed, loaded.evaluate.seed, loaded.tokenize.seed) == (7, 8, 3)


def test_an_alias_bomb_stops_a_stage_before_it_runs(tmp_path):
    (tmp_path / "params.yaml").write_text(BILLION_LAUGHS)
    proc = subprocess.run([sys.executable, ROOT / "stages/clean.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: params.yaml: line 1: more than 100,000 values once its aliases (*name) are expanded"]
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_the_dataclass_defaults_are_params_yaml():
    # One set of defaults: code that builds a section without params.yaml (a bench, a test) gets the same values.
    assert load_params(Path(__file__).resolve().parents[3] / "params.yaml") == Params()
