"""Experiment recipes that chain training runs: capacity-matched comparisons, sweeps, studies, label fractions.

Each recipe lives in its own module (import it directly, e.g. ``hiervq.experiments.capacity``); this package
imports nothing at import time.
"""
