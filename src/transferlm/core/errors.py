"""Errors a user can act on. Stages print them as one line and exit non-zero (see cli.run_stage)."""


class TransferLMError(Exception):
    """A problem with the user's input, params or environment, stated in one line."""


class ParamError(TransferLMError):
    """An invalid value in params.yaml (or given with `dvc exp run -S`)."""


class InputError(TransferLMError):
    """A corpus file, URL, archive or model that cannot be used."""
