"""All-or-nothing stage outputs.

A stage writes every output under a temporary sibling path and renames them into place only after all
of them are complete, so a crash, an error or a kill never leaves a partial file that a later stage (or
`dvc commit`) would take for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def staged_outputs(*finals: str | Path) -> Iterator[list[Path]]:
    """Yield one temporary path per final output; on success move each into place, on error drop them.

    The temporary paths live next to their finals (same filesystem, so the rename is atomic per path)
    and do not exist yet: the caller creates a file or a directory there.
    """
    finals_p = [Path(f) for f in finals]
    temps: list[Path] = []
    for final in finals_p:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        os.unlink(name)
        temps.append(Path(name))
    try:
        yield temps
        missing = [str(f) for f, t in zip(finals_p, temps) if not t.exists()]
        if missing:
            raise RuntimeError(f"stage did not write its outputs: {', '.join(missing)}")
    except BaseException:
        for tmp in temps:
            _remove(tmp)
        raise
    for final, tmp in zip(finals_p, temps):
        _remove(final)
        os.replace(tmp, final)


def dump_json(path: str | Path, data: Any) -> None:
    """Write JSON in the project's format (use inside staged_outputs, or write_json for one file)."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (a temp file renamed over the target)."""
    with staged_outputs(path) as (tmp,):
        dump_json(tmp, data)
