"""The language model: loading and building models, device and precision, speed levers, token blocks,
held-out loss, model cards."""
