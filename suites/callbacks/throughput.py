"""Throughput and memory accounting for every training log line: real (non-pad) tokens and samples
(documents, also inside packed rows) counted from each micro-batch without a device sync per step, the
time spent evaluating or saving left out, and peak memory."""

from __future__ import annotations

import resource
import time

import torch
from transformers import TrainerCallback

GIB = 1024**3


def _as_count(t):
    return int(t) if t.device.type == "cpu" else t  # a device tensor: summed without a sync


def count_tokens(inputs: dict, encoder_decoder: bool = False):
    """Real tokens of a micro-batch: the attention mask's ones (all of a padding-free packed row),
    plus, for an encoder-decoder model, the target tokens its decoder works on."""
    ids = inputs.get("input_ids")
    if ids is None:
        return 0
    mask = inputs.get("attention_mask")
    n = _as_count(mask.sum()) if mask is not None else int(ids.numel())
    labels = inputs.get("labels")
    if encoder_decoder and labels is not None:
        n = n + _as_count((labels != -100).sum())
    return n


def count_samples(inputs: dict):
    """Documents in a micro-batch: a packed row without attention mask holds one document per
    position-id restart. On a GPU the count stays a device tensor (no sync per step); the log line
    reads it."""
    ids = inputs.get("input_ids")
    if ids is None:
        return 0
    pos = inputs.get("position_ids")
    if pos is not None and "attention_mask" not in inputs:
        return _as_count((pos == 0).sum())
    return int(ids.shape[0])


class PauseClock(TrainerCallback):
    """Time spent evaluating or saving between two training log lines (callbacks fire at the end
    of a step, of an evaluation and of a save)."""

    def __init__(self):
        self.mark, self.paused = time.perf_counter(), 0.0

    def on_step_end(self, args, state, control, **kwargs):
        self.mark = time.perf_counter()

    def _pause_end(self, *args, **kwargs):
        now = time.perf_counter()
        self.paused += now - self.mark
        self.mark = now

    on_evaluate = on_save = _pause_end

    def take(self) -> float:
        paused, self.paused = self.paused, 0.0
        return paused


def peak_memory() -> dict:
    if torch.cuda.is_available():
        return {"peak_mem_gib": round(torch.cuda.max_memory_allocated() / GIB, 3)}
    # ru_maxrss is in KiB on Linux
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)}
