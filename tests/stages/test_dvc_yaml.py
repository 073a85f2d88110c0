"""dvc.yaml cannot drift from the code: stage deps match the imports, params match what stages read.

The real dvc.yaml is checked for imports here (fast, AST only); the params check needs a real run and is
called from test_pipeline.py. The checkers themselves are tested on small fabricated repositories.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from helpers import HOOKS  # the params trace, installed by its sitecustomize
from helpers.dvc_checks import check_imports, check_params_trace, import_closure, load_stages, sync_code_deps

ROOT = Path(__file__).resolve().parents[2]


def test_every_stage_deps_match_its_imports():
    problems = check_imports(ROOT)
    assert not problems, "dvc.yaml deps drifted from the code:\n" + "\n".join(problems)


def test_every_stage_has_a_script_the_checks_can_read():
    stages = load_stages(ROOT)
    assert stages
    for stage in stages:
        if "python" in stage.cmd:  # otherwise the import check would skip it silently
            assert stage.script() and (ROOT / stage.script()).is_file(), stage


# ----------------------------------------------------------------------------- fabricated repositories


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _stage_repo(tmp_path: Path, stages: dict) -> Path:
    _write(tmp_path, {
        "src/pkg/__init__.py": "",
        "src/pkg/a.py": "from . import b\n",
        "src/pkg/b.py": "def f():\n    import pkg.c\n",  # a function-level import counts too
        "src/pkg/c.py": "",
        "src/pkg/d.py": "",
        "src/pkg/typed.py": "",
        "src/pkg/sub/__init__.py": "",
        "src/pkg/sub/e.py": "from ..c import x\n",
        "stages/run.py": """
            from typing import TYPE_CHECKING
            import yaml
            from pkg.a import thing
            from pkg import d
            if TYPE_CHECKING:
                import pkg.typed
        """,
        "stages/other.py": "import pkg.sub.e\n",
    })
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8")
    return tmp_path


RUN_DEPS = ["stages/run.py", "src/pkg/__init__.py", "src/pkg/a.py", "src/pkg/b.py", "src/pkg/c.py", "src/pkg/d.py"]


def test_import_closure_follows_relative_function_level_and_package_imports(tmp_path):
    repo = _stage_repo(tmp_path, {})
    assert sorted(import_closure(repo, "stages/run.py")) == sorted(RUN_DEPS)
    assert sorted(import_closure(repo, "stages/other.py")) == [
        "src/pkg/__init__.py", "src/pkg/c.py", "src/pkg/sub/__init__.py", "src/pkg/sub/e.py", "stages/other.py"]


def test_check_imports_passes_when_deps_match(tmp_path):
    repo = _stage_repo(tmp_path, {
        "run": {"cmd": "python stages/run.py", "deps": RUN_DEPS + ["data/in"]},
        "whole": {"cmd": "python stages/other.py --x 1", "deps": ["stages/other.py", "src/pkg"]},  # a folder dep
        "module": {"cmd": "python -m pkg.d", "deps": ["src/pkg/__init__.py", "src/pkg/d.py"]},
        "shell": {"cmd": "cp a b", "deps": ["a"]},
    })
    assert check_imports(repo) == []


def test_check_imports_names_stage_and_missing_or_extra_file(tmp_path):
    deps = [d for d in RUN_DEPS if d != "src/pkg/c.py"] + ["src/pkg/typed.py"]
    repo = _stage_repo(tmp_path, {
        "grid": {
            "matrix": {"x": [1, 2]},
            "cmd": "python stages/run.py go --x ${item.x}",
            "deps": deps + ["out/${item.x}"],
        },
    })
    assert check_imports(repo) == [
        "stage grid: src/pkg/c.py is imported (by src/pkg/b.py) but not in deps",
        "stage grid: src/pkg/typed.py is in deps but never imported by stages/run.py",
    ]


def test_check_imports_names_a_code_folder_the_stage_imports_nothing_from(tmp_path):
    repo = _stage_repo(tmp_path, {
        # stages/run.py imports from src/pkg but nothing from src/pkg/sub: that folder would rerun it for nothing.
        "run": {"cmd": "python stages/run.py", "deps": ["stages/run.py", "src/pkg", "src/pkg/sub"]},
    })
    assert check_imports(repo) == [
        "stage run: src/pkg/sub/ is in deps but stages/run.py imports nothing from it"]


def test_sync_code_deps_writes_the_script_and_the_folders_it_imports_from(tmp_path):
    repo = _stage_repo(tmp_path, {})
    # dvc.yaml as this project writes it (the rewrite works on its text, keeping comments and layout).
    (repo / "dvc.yaml").write_text("stages:\n  whole:\n    cmd: python stages/other.py\n    deps:\n"
                                   "      - stages/other.py\n      - src/pkg/gone.py\n      - data/in\n")
    assert sync_code_deps(repo) == 1
    deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["whole"]["deps"]
    # pkg.sub.e lies in the folder src/pkg/sub; pkg/__init__.py and pkg/c.py sit at the package's top level.
    assert deps == ["stages/other.py", "src/pkg/__init__.py", "src/pkg/c.py", "src/pkg/sub", "data/in"]
    assert check_imports(repo) == [] and sync_code_deps(repo) == 0


def test_check_imports_reads_foreach_stages(tmp_path):
    repo = _stage_repo(tmp_path, {
        "each": {"foreach": ["a", "b"], "do": {"cmd": "python stages/other.py ${item}", "deps": ["stages/other.py"]}},
    })
    problems = check_imports(repo)
    assert "stage each: src/pkg/sub/e.py is imported (by stages/other.py) but not in deps" in problems
    assert len(problems) == 4


# ------------------------------------------------------------------------------------- params trace


def _trace(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps({"argv": argv, "keys": keys}) + "\n" for argv, keys in records))
    return path


def test_check_params_trace_maps_lines_to_stages_and_reports_drift(tmp_path):
    _write(tmp_path, {"stages/train.py": "", "stages/sweep.py": ""})
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "train": {"cmd": "python stages/train.py", "params": ["train", "model.base"]},
        "sweep": {
            "matrix": {"opt": ["adamw", "sgd"]},
            "cmd": "python stages/sweep.py run --opt ${item.opt}",
            "params": ["sweep.max_steps", "train.seed", "train.lr_schedule"],
        },
        "summary": {"cmd": "python stages/sweep.py summarize", "params": [{"params.yaml": ["sweep.lrs"]}]},
        "untraced": {"cmd": "python stages/train.py --other", "params": ["never"]},
    }}, sort_keys=False))
    trace = _trace(
        tmp_path / "trace.jsonl",
        (["stages/train.py"], ["train.lr", "train.seed", "model.base", "fetch.corpus"]),
        ([str(tmp_path / "stages/sweep.py"), "run", "--opt", "adamw"], ["sweep.max_steps", "train.seed"]),
        (["stages/sweep.py", "run", "--opt", "sgd"], ["sweep.max_steps", "train.batch_size"]),
        (["stages/sweep.py", "summarize"], ["sweep.lrs"]),
        (["stages/sweep.py", "score", "x.csv"], ["evaluate.seed"]),
    )
    assert check_params_trace(tmp_path, trace) == [
        "no stage runs stages/sweep.py score x.csv",
        "stage train: reads fetch.corpus but does not list it in params",
        "stage sweep: reads train.batch_size but does not list it in params",
        "stage sweep: lists train.lr_schedule in params but never reads it",
    ]


def test_check_params_trace_needs_one_read_key_of_a_listed_section(tmp_path):
    _write(tmp_path, {"stages/clean.py": ""})
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "clean": {"cmd": "python stages/clean.py", "params": ["clean", "fetch"]}}}))
    trace = _trace(tmp_path / "t.jsonl", (["stages/clean.py"], ["clean.unicode"]))
    assert check_params_trace(tmp_path, trace) == ["stage clean: lists fetch in params but never reads it"]


# ----------------------------------------------------------------------------------- the recorder


RECORDER_SCRIPT = """
import dataclasses, json, sys
from transferlm.core.params import TrainParams, load_params
params = load_params(sys.argv[1])
params.model.base
[entry.source for entry in params.fetch.corpus]
assert vars(params.clean) == vars(dataclasses.replace(params.clean))  # no trace state inside the instance
copy = dataclasses.replace(params.train, lr=0.5)
copy.lr  # the copy is not traced, but replace read every other field of params.train to copy it
copied = [f"train.{f.name}" for f in dataclasses.fields(TrainParams) if f.name != "lr"]
copied += [f"clean.{f.name}" for f in dataclasses.fields(params.clean.__class__)]  # vars() reads them all
print(json.dumps({"off": TrainParams.__getattribute__ is object.__getattribute__, "copied": copied}))
"""


def _run_recorder(tmp_path: Path, env_extra: dict) -> dict:
    params_file = tmp_path / "params.yaml"
    params_file.write_text("train:\n  lr: 0.001\nfetch:\n  corpus: [a.txt, {source: b.txt}]\n")
    env = {k: v for k, v in os.environ.items() if k != "TRANSFERLM_PARAMS_TRACE"} | {"PYTHONPATH": str(HOOKS)}
    env |= env_extra
    proc = subprocess.run([sys.executable, "-c", RECORDER_SCRIPT, str(params_file), "--flag"],
                          env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    return json.loads(proc.stdout)


def test_params_trace_records_fields_read_on_loaded_sections(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"argv": ["earlier"], "keys": []}\n')  # appended to, not overwritten
    out = _run_recorder(tmp_path, {"TRANSFERLM_PARAMS_TRACE": str(trace)})
    assert out["off"] is False
    lines = trace.read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[1])
    assert record["argv"] == ["-c", str(tmp_path / "params.yaml"), "--flag"]
    assert record["keys"] == sorted(["fetch.corpus", "model.base", *out["copied"]])
    assert "train.lr" not in record["keys"]


def test_params_trace_off_installs_nothing(tmp_path):
    assert _run_recorder(tmp_path, {})["off"] is True
    assert not list(tmp_path.glob("*.jsonl"))


NESTED_SCRIPT = """
import json
from dataclasses import dataclass, field
import params_trace

@dataclass(frozen=True)
class Item:
    lr: float = 0.1
    steps: int = 1

@dataclass(frozen=True)
class Section:
    entries: list = field(default_factory=lambda: [Item(), Item()])
    shapes: dict = field(default_factory=lambda: {"small": Item(), "big": Item()})
    unread: int = 0

section = Section()
params_trace._mark_values(section, "sec", precise=True)
section.entries[1].steps, section.shapes["big"].lr
print(json.dumps(sorted(params_trace._trace_reads)))
"""


def test_params_trace_keys_of_list_items_and_mapping_entries():
    # In a fresh process: marking installs the recorder on these classes.
    proc = subprocess.run([sys.executable, "-c", NESTED_SCRIPT], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(HOOKS)})
    # A list item is known by its list; a mapping entry by its YAML path.
    assert json.loads(proc.stdout) == ["sec.entries", "sec.shapes", "sec.shapes.big.lr"]
