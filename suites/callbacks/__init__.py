"""Trainer callbacks every family gets: early stopping (early_stopping.py), the non-finite guard
(nonfinite.py), throughput/memory accounting (throughput.py) and the logging frequency of short runs
(log_frequency.py). Each is a transformers
TrainerCallback or a helper the base trainer calls; none knows a task family.

May import: suites.errors, suites.config; nothing of the trainers, outputs or run layers.
"""

from __future__ import annotations


def find_callback(trainer, cls):
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, cls)), None)
