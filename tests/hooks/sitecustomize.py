"""Imported by Python at start-up in every process of a test that puts tests/hooks on PYTHONPATH (stage
subprocesses under `dvc repro` included): installs the params trace when TRANSFERLM_PARAMS_TRACE is set."""

import os

if os.environ.get("TRANSFERLM_PARAMS_TRACE"):
    import params_trace

    params_trace.install()
