"""Totals of a run trained in several sessions (stopped, then `--resume`d).

transformers reports train_loss and train_runtime for the last train() call only: a run stopped at
step 17 of 24 and resumed ends with the mean loss of steps 18-24 and the runtime of that part. Each
checkpoint here also records the run so far (TOTALS_FILE: the sum of the step losses, the runtime
of each session up to that step), and the resumed run's results cover the whole run:

- train_loss: the mean over all steps, as the uninterrupted run reports it;
- train_runtime_s: the sum of the sessions; train_runtime_s_sessions: each session's part;
- train_runtime / train_samples_per_second / train_steps_per_second: over the sessions summed.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger("trainsuite")

TOTALS_FILE = "trainsuite_totals.json"


class SessionTotals:
    """What the checkpoints of this session add to the totals of the sessions before it."""

    def __init__(self, previous: dict | None):
        self.previous = previous or {"train_loss_sum": 0.0, "runtime_s_sessions": []}
        self.start = time.perf_counter()

    def record(self, trainer, checkpoint_dir: str) -> None:
        """Write TOTALS_FILE into a checkpoint being saved (by the process that saves)."""
        loss_sum = trainer._total_loss_scalar + float(trainer._tr_loss.item())  # logged + not yet logged
        data = {"global_step": trainer.state.global_step,
                "train_loss_sum": self.previous["train_loss_sum"] + loss_sum,
                "runtime_s_sessions": [*self.previous["runtime_s_sessions"],
                                       round(time.perf_counter() - self.start, 3)]}
        with open(os.path.join(checkpoint_dir, TOTALS_FILE), "w") as fh:
            json.dump(data, fh, indent=1)


def attach(trainer, resume: str | None) -> SessionTotals:
    """Start this session's clock; read the totals of the checkpoint resumed from."""
    previous = None
    if resume:
        try:
            with open(os.path.join(resume, TOTALS_FILE)) as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            log.warning("%s has no readable %s: train_loss and the runtime in results.json cover the "
                        "resumed part only", resume, TOTALS_FILE)
    trainer._suite_totals = SessionTotals(previous)
    trainer._suite_totals.resumed = previous is not None
    return trainer._suite_totals


def record(trainer, checkpoint_dir: str) -> None:
    totals = getattr(trainer, "_suite_totals", None)
    if totals is not None:
        totals.record(trainer, checkpoint_dir)


def whole_run(trainer, metrics: dict, session_runtime_s: float) -> tuple[dict, dict]:
    """(metrics, extra results) over every session of the run, from this session's train() metrics."""
    totals = getattr(trainer, "_suite_totals", None)
    parts = [round(session_runtime_s, 3)]
    steps = trainer.state.global_step
    if totals is None or not totals.resumed:
        if steps == getattr(trainer, "_initial_global_step", 0) and steps > 0:
            # resumed at the end, from a checkpoint without totals: no loss or speed to report
            metrics = {k: v for k, v in metrics.items() if k == "epoch" or not k.startswith("train_")}
        return metrics, {"train_runtime_s": parts[0], "train_runtime_s_sessions": parts}
    prev = totals.previous
    out = dict(metrics)
    session_steps = steps - prev["global_step"]
    if session_steps <= 0:  # resumed at the end of the run: the sessions before trained it all
        parts = list(prev["runtime_s_sessions"])
    else:
        parts = [*prev["runtime_s_sessions"], parts[0]]
    if steps > 0:
        out["train_loss"] = (prev["train_loss_sum"] + trainer._total_loss_scalar) / steps
    # transformers' speed metrics of this session, rescaled to the whole run
    session_runtime = metrics.get("train_runtime")
    if session_runtime and session_steps > 0:
        runtime = sum(prev["runtime_s_sessions"]) + session_runtime
        samples = metrics.get("train_samples_per_second", 0.0) * session_runtime * steps / session_steps
    else:
        runtime = sum(parts)
        samples = getattr(trainer, "schedule_samples", 0) * steps / max(trainer.state.max_steps, 1)
    if runtime > 0:
        out.update(train_runtime=round(runtime, 4), train_samples_per_second=round(samples / runtime, 3),
                   train_steps_per_second=round(steps / runtime, 3))
    return out, {"train_runtime_s": round(sum(parts), 3), "train_runtime_s_sessions": parts}
