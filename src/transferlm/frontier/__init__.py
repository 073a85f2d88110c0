"""What pretraining saves: compute and data against the from-scratch frontier, scaling fits."""
