"""All-or-nothing stage outputs.

A stage writes every output under a temporary sibling path (`.NAME.xxxxxxxx.PID.tmp`) and swaps them into
place only after all of them are complete, so a crash, an error or a kill never leaves a partial file
that a later stage (or `dvc commit`) would take for a finished one.

The swap is as close to all-at-once as renames allow: first every old output is moved aside (to
`.NAME.xxxxxxxx.PID.old.tmp`), then every new one is moved in, then the old ones are deleted. At no moment
are old and new outputs visible side by side: a kill in the first phase leaves some olds and some
gaps, in the second some news and some gaps, and a gap makes DVC rerun the stage. An exception during
the swap puts the old outputs back. Temporary names all end in `.tmp`, which .gitignore and .dvcignore
leave out, and a stage removes the ones a killed run left beside its outputs when it starts writing:
only those whose writer (the process id in the name) has ended, so a second writer of the same output
never deletes the first one's live temporaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process's sweep may have taken it first
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _temp_sibling(final: Path, kind: str) -> Path:
    """A fresh unused name beside `final`: .NAME.<8 random chars>.<pid>.tmp (or .old.tmp), not yet created."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".{os.getpid()}{kind}.tmp", dir=final.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


def remove_stale_temps(final: Path) -> list[Path]:
    """Delete the temporary siblings of `final` that an interrupted run left behind; return them.

    Only names this module makes for this very output match (8 random characters from tempfile), so
    `train.json`'s leftovers are never confused with those of an output called `train`; and only those
    whose writer has ended, so a run writing the same output right now keeps its own.
    """
    pattern = re.compile(rf"\.{re.escape(final.name)}\.[a-z0-9_]{{8}}(?:\.(?P<pid>\d+))?(?:\.old)?\.tmp")
    return remove_dead_writers_temps(final.parent, pattern)


def remove_dead_writers_temps(folder: Path, pattern: re.Pattern) -> list[Path]:
    """Delete the entries of `folder` whose names match `pattern` and whose writer has ended; return them.

    The writer is the process id in the pattern's group `pid`; a name without one predates these ids and
    its writer is long gone.
    """
    if not folder.is_dir():
        return []
    stale = []
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match and writer_is_gone(match["pid"]):
            _remove(path)
            stale.append(path)
    return stale


def writer_is_gone(pid: str | None) -> bool:
    """Whether the process with this id (from a temporary name) has ended; None: a name without an id.

    A running process, this one or another user's included, keeps its temporaries. An id reused by an
    unrelated process can only keep a dead run's leftovers a while longer, never remove a live writer's.
    """
    if pid is None:
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: nothing is sent, only whether the process exists is checked
    except (ProcessLookupError, OverflowError):
        return True
    except PermissionError:
        return False
    return False


def swap_into_place(pairs: list[tuple[Path, Path]]) -> None:
    """Move each temp onto its final: all olds aside, then all news in, then drop the olds.

    On an exception the finals already moved in are taken out again and the olds put back, so the
    outputs are either all new or all as they were.
    """
    aside: list[tuple[Path, Path]] = []  # (final, where its old version went)
    moved_in: list[tuple[Path, Path]] = []  # (temp, final)
    try:
        for final, _ in pairs:
            if final.exists() or final.is_symlink():
                old = _temp_sibling(final, ".old")
                os.replace(final, old)
                aside.append((final, old))
        for final, temp in pairs:
            os.replace(temp, final)
            moved_in.append((temp, final))
    except BaseException:
        for temp, final in reversed(moved_in):
            os.replace(final, temp)
        for final, old in reversed(aside):
            os.replace(old, final)
        raise
    for _, old in aside:
        _remove(old)


@contextlib.contextmanager
def staged_outputs(*finals: str | Path) -> Iterator[list[Path]]:
    """Yield one temporary path per final output; on success swap them all into place, on error drop them.

    The temporary paths live next to their finals (same filesystem, so each rename is atomic) and do
    not exist yet: the caller creates a file or a directory there.
    """
    finals_p = [Path(f) for f in finals]
    temps: list[Path] = []
    for final in finals_p:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(final)
        temps.append(_temp_sibling(final, ""))
    try:
        yield temps
        missing = [str(f) for f, t in zip(finals_p, temps, strict=True) if not t.exists()]
        if missing:
            raise RuntimeError(f"stage did not write its outputs: {', '.join(missing)}")
        swap_into_place(list(zip(finals_p, temps, strict=True)))
    finally:
        for tmp in temps:  # after a successful swap none is left; after an error, all are dropped
            _remove(tmp)


def dump_json(path: str | Path, data: Any) -> None:
    """Write JSON in the project's format (use inside staged_outputs, or write_json for one file)."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (a temp file renamed over the target)."""
    with staged_outputs(path) as (tmp,):
        dump_json(tmp, data)


def write_csv(path: str | Path, rows: list[dict], columns: tuple[str, ...] | list[str] | None = None) -> None:
    """Rows as CSV (the format of every curve and table under plots/ and metrics/); floats to 6 digits."""
    import csv

    columns = list(columns or (rows[0].keys() if rows else []))
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in columns])


def redact_url(source: str) -> str:
    """`source` with a URL's user:password@ and its ?query and #fragment shown as ***; anything else as it is.

    For what is kept or shared (the manifest, metrics/fetch.json, model cards): userinfo can hold a
    password and a query string a signed token.
    """
    try:
        parts = urlsplit(source)
    except ValueError:
        return source
    if parts.scheme.lower() not in ("http", "https"):
        return source
    netloc = f"***@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "",
                       "***" if parts.fragment else ""))
