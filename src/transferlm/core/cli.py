"""Shared entry point for the Typer scripts in stages/: logging set-up and one-line user errors."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import typer

from transferlm.core.errors import TransferLMError

log = logging.getLogger("transferlm")

# Every stage command's `--params` option (one Option object may serve many Typer commands).
PARAMS_FILE = typer.Option(Path("params.yaml"), "--params", help="The params file.")


def setup_logging() -> None:
    level = os.environ.get("TRANSFERLM_LOG", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # transformers and datasets are chatty at INFO; keep their warnings only.
    for name in ("transformers", "datasets", "accelerate", "httpx", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)


def record_wall_clock(seconds: float) -> None:
    """Under `dvc repro` (which names the stage in DVC_STAGE), keep the stage's wall-clock in
    metrics/timings/<stage>.json for the report. A measurement, not a stage output: DVC does not track it."""
    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return
    from transferlm.core import paths
    from transferlm.core.outputs import write_json

    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in stage)
    write_json(paths.TIMINGS / f"{safe}.json", {"stage": stage, "seconds": round(seconds, 1)})


def run_stage(app: typer.Typer) -> None:
    """Run a stage's Typer app; a TransferLMError becomes `error: <message>` on stderr and exit 1."""
    setup_logging()
    started = time.perf_counter()
    try:
        app(standalone_mode=False)
        record_wall_clock(time.perf_counter() - started)
    except TransferLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
