"""The optimizer x learning-rate study: successive halving, seeds, the lr range test, batch sizes."""
