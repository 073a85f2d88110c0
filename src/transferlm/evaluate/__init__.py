"""Samples and their measures: prompts, generation, text measures, the blind review page and its statistics."""
