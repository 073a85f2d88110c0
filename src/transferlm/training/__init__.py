"""The training loop and the runs built on it: optimizers, schedules, checkpoints, resume."""
