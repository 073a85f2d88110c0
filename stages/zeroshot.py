"""zeroshot stage: the base model's held-out loss before any training -> metrics/zeroshot.json.

Measured once: every fine-tuning run starts from this loss, and the study labels a run that ends above it
"worse than no training".
"""

import math
import os
from pathlib import Path

import torch
import typer

from transferlm.core import paths
from transferlm.core.cli import PARAMS_FILE, run_stage
from transferlm.core.outputs import write_json
from transferlm.core.params import load_params
from transferlm.lm import blocks as data
from transferlm.lm import models
from transferlm.lm.cpu_probe import cpu_model
from transferlm.lm.device import pick_device, resolve_precision_decision
from transferlm.lm.heldout import bits_per_byte, heldout_bytes_per_token, heldout_loss

app = typer.Typer(add_completion=False, help=__doc__)


@app.command(help=__doc__)
def main(params_file: Path = PARAMS_FILE) -> None:
    params = load_params(params_file)
    heldout = data.heldout_blocks(paths.TOKENIZED, params.evaluate.eval_blocks, params.evaluate.seed)
    model = models.load_pretrained(paths.BASE_MODEL).to(pick_device())
    decision = resolve_precision_decision(params.train.precision, pick_device(), hidden_size=model.config.hidden_size,
                                          intermediate_size=getattr(model.config, "intermediate_size", None),
                                          tokens=params.train.batch_size * heldout.shape[1])
    precision = decision["precision"]
    loss, tokens = heldout_loss(model, heldout, params.evaluate.batch_size, precision)
    # Every held-out loss is on these blocks: the report turns each into bits per byte with this ratio.
    bytes_per_token = heldout_bytes_per_token(heldout, paths.BASE_MODEL)
    write_json(paths.ZEROSHOT, {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens,
                                "bytes_per_token": bytes_per_token,
                                "bits_per_byte": bits_per_byte(loss, bytes_per_token),
                                "blocks": len(heldout), "precision": precision,
                                "precision_choice": decision,
                                # The machine every figure of this run comes from (the report says so).
                                "cpu": cpu_model(), "cores": os.cpu_count(),
                                "device": str(pick_device()), "torch": torch.__version__})


if __name__ == "__main__":
    run_stage(app)
