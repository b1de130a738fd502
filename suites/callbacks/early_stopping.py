"""Early stopping on train.metric_for_best_model (config block `early_stopping: {patience, threshold}`).

Unlike a callback that keeps its own counter, the count of evaluations without improvement is
recomputed from the trainer's log history at each evaluation. The history travels in every
checkpoint (trainer_state.json), so a resumed run stops exactly where the uninterrupted one would
have, and a checkpoint evaluated out of turn cannot reset the count.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

from ..errors import UserError
from . import find_callback

log = logging.getLogger("trainsuite")


def metric_key(args) -> str:
    name = args.metric_for_best_model or "loss"
    return name if name.startswith("eval_") else f"eval_{name}"


def evaluations_without_improvement(values: list[float], greater_is_better: bool, threshold: float) -> tuple[int, int]:
    """(how many of the last evaluations did not beat the best before them by more than `threshold`,
    index of the best value). The first evaluation always counts as an improvement."""
    best, best_at, waiting = None, -1, 0
    for i, v in enumerate(values):
        better = best is None or (v - best > threshold if greater_is_better else best - v > threshold)
        if better:
            best, best_at, waiting = v, i, 0
        else:
            waiting += 1
    return waiting, best_at


class EarlyStopping(TrainerCallback):
    def __init__(self, patience: int, threshold: float = 0.0):
        self.patience = patience
        self.threshold = threshold
        self.stopped_at_step = None

    def _history(self, args, state, now: float | None = None) -> tuple[list[tuple[int, float]], int, int]:
        """((step, value) of each evaluation, evaluations without improvement, index of the best); `now`:
        the value of this step's evaluation when the log history does not hold it yet."""
        key = metric_key(args)
        history = [(e["step"], float(e[key])) for e in state.log_history if key in e and "step" in e]
        if now is not None and (not history or history[-1][0] != state.global_step):
            history.append((state.global_step, now))
        greater = args.greater_is_better if args.greater_is_better is not None else not key.endswith("loss")
        waiting, best_at = evaluations_without_improvement([v for _, v in history], greater, self.threshold)
        return history, waiting, best_at

    def ended_the_run(self, args, state) -> bool:
        """Whether this rule stopped the run at state's step (a checkpoint resumed from): its evaluation
        there used up the patience. A resumed run would otherwise train on to the next evaluation."""
        history, waiting, _ = self._history(args, state)
        if history and history[-1][0] == state.global_step and waiting >= self.patience:
            self.stopped_at_step = state.global_step
            return True
        return False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        key = metric_key(args)
        if metrics is None or key not in metrics:
            found = ", ".join(sorted(k for k in (metrics or {}) if k.startswith("eval_")))
            raise UserError(f"early_stopping: the evaluation reports no '{key}' (train.metric_for_best_model); "
                            f"it reports: {found or 'nothing'}")
        # the log history holds this evaluation already (Trainer logs metrics before on_evaluate)
        history, waiting, best_at = self._history(args, state, now=float(metrics[key]))
        if waiting >= self.patience and state.global_step < state.max_steps:
            step, best = history[best_at]
            log.info("early stopping at step %d: %s has not improved by more than %g for %d evaluations "
                     "(best %.6g at step %d)", state.global_step, key, self.threshold, waiting, best, step)
            self.stopped_at_step = state.global_step
            control.should_training_stop = True
        return control


def early_stopping_callbacks(cfg) -> list:
    es = getattr(cfg, "early_stopping", None) if cfg is not None else None
    return [EarlyStopping(es.patience, es.threshold)] if es is not None else []


def results(trainer) -> dict:
    """results.json keys: the step where early stopping ended training, and the best checkpoint's."""
    cb = find_callback(trainer, EarlyStopping)
    if cb is None:
        return {}
    out = {"early_stopped_at_step": cb.stopped_at_step}
    best = trainer.state.best_model_checkpoint
    if best:
        out["best_checkpoint"] = best
    return out
