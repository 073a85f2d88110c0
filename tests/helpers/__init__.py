"""Test helpers, importable from every test as `helpers` (pyproject's pytest `pythonpath` puts tests/ first).

- tiny: a tiny model, tokenizer and documents, and the tiny params overlay for pipeline runs;
- dvc_checks: dvc.yaml's code deps and params lists against what the stages really import and read;
- project: copies of this repository set up for the tiny pipeline, and the one tiny `dvc repro` the
  end-to-end tests share (see tests/conftest.py's `tiny_repo`).
"""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent  # the repository
HOOKS = TESTS / "hooks"  # sitecustomize.py: the params trace, installed in stage processes via PYTHONPATH
TEST_DATA = TESTS / "data"  # corpus/ and screenplays/ fixtures
