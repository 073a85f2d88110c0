"""The params trace: which params.yaml keys a stage process really reads (test harness only).

Installed in a stage's process by tests/hooks/sitecustomize.py, which Python imports at start-up when the
tests put tests/hooks on PYTHONPATH; the library itself knows nothing of it.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import sys
from typing import Any

from transferlm.core import params as params_module
from transferlm.core.params import Params

# With TRANSFERLM_PARAMS_TRACE=<file>, every field read on a section that load_params() built is recorded
# as "section.field" (a field of a list item, such as a fetch.corpus entry, as the list) and appended to
# <file> at exit as one JSON line {"argv": ..., "keys": [...]}. tests/helpers/dvc_checks.py compares the keys with
# the `params:` dvc.yaml lists for the stage that ran, so a stage cannot read a param DVC does not watch.
# Unset, nothing is installed: the classes keep object.__getattribute__ and a read costs nothing extra.
# Only loaded instances are traced: a copy made by dataclasses.replace holds values that may come from
# elsewhere (command-line options, another section), though replace's own copying reads count. Reading
# `__dict__` (vars(section)) counts as reading every field.

TRACE_ENV = "TRANSFERLM_PARAMS_TRACE"
# id(instance) -> (instance, (key, is a list item)). Kept outside the instances so that vars(), ==, copy
# and pickling see exactly what they see untraced; holding the instance keeps its id from being reused.
_trace_marks: dict[int, tuple[Any, tuple[str, bool]]] = {}
_trace_fields: dict[type, frozenset[str]] = {}
_trace_reads: set[str] = set()


def _traced_getattribute(self: Any, name: str) -> Any:
    value = object.__getattribute__(self, name)
    entry = _trace_marks.get(id(self))
    if entry is None or entry[0] is not self:
        return value
    fields = _trace_fields[type(self)]
    if name in fields:
        read = (name,)
    elif name == "__dict__":
        read = fields
    else:
        return value  # a method or dunder: the fields it uses are recorded as it reads them
    key, is_item = entry[1]
    _trace_reads.update([key] if is_item else [f"{key}.{f}" for f in read])
    return value


def trace(params: Params, trace_file: str) -> None:
    if not _trace_fields:  # the first traced load in this process: write the reads at exit
        atexit.register(_write_trace, os.path.abspath(trace_file))
    for f in dataclasses.fields(params):
        _mark_values(object.__getattribute__(params, f.name), f.name, precise=True)


def _mark_values(value: Any, key: str, precise: bool) -> None:
    """Mark the dataclasses held at YAML path `key`; inside a list, reads record the list's key only."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _mark(value, (key, not precise))
        for f in dataclasses.fields(value):
            inner = f"{key}.{f.name}" if precise else key
            _mark_values(object.__getattribute__(value, f.name), inner, precise)
    elif isinstance(value, list):
        for item in value:
            _mark_values(item, key, precise=False)
    elif isinstance(value, dict):  # a mapping's keys are YAML keys: scratch.shapes.full.lr
        for name, item in value.items():
            _mark_values(item, f"{key}.{name}" if precise else key, precise)


def _mark(obj: Any, mark: tuple[str, bool]) -> None:
    cls = type(obj)
    if cls not in _trace_fields:
        _trace_fields[cls] = frozenset(f.name for f in dataclasses.fields(cls))
        cls.__getattribute__ = _traced_getattribute
    _trace_marks[id(obj)] = (obj, mark)


def _write_trace(trace_file: str) -> None:
    line = json.dumps({"argv": sys.argv, "keys": sorted(_trace_reads)})
    with open(trace_file, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def install() -> None:
    """Wrap load_params so that every Params it returns is traced into $TRANSFERLM_PARAMS_TRACE."""
    load = params_module.load_params

    def traced_load_params(*args, **kwargs):
        loaded = load(*args, **kwargs)
        trace(loaded, os.environ[TRACE_ENV])
        return loaded

    params_module.load_params = traced_load_params
