"""Shared entry point for the Typer scripts in stages/: logging set-up and one-line user errors."""

from __future__ import annotations

import logging
import os
import sys

import typer

from transferlm.errors import TransferLMError

log = logging.getLogger("transferlm")


def setup_logging() -> None:
    level = os.environ.get("TRANSFERLM_LOG", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # transformers and datasets are chatty at INFO; keep their warnings only.
    for name in ("transformers", "datasets", "accelerate", "httpx", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_stage(app: typer.Typer) -> None:
    """Run a stage's Typer app; a TransferLMError becomes `error: <message>` on stderr and exit 1."""
    setup_logging()
    try:
        app(standalone_mode=False)
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
