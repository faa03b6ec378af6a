"""Benchmarks that write the pages under ``docs/results/``: ``agora bench NAME``."""
