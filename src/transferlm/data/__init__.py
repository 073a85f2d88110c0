"""Corpus and base model in, tokenized blocks out: fetch, cleaning rules and script layouts, tokenize."""
