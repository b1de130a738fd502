"""The best evaluation (train.metric_for_best_model), with ties broken by eval_loss.

transformers keeps the first evaluation that reaches the best value: on a small eval set accuracy
often repeats (0.9 at two steps), and the earlier checkpoint stays "best" although the later one
has the lower eval_loss. Here a tie goes to the lower eval_loss.
"""

from __future__ import annotations


def _key(args) -> str | None:
    name = args.metric_for_best_model
    if name is None:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"


def best_eval_loss(state) -> float | None:
    """eval_loss of the evaluation at state.best_global_step (the log history holds it)."""
    for entry in reversed(state.log_history):
        if entry.get("step") == state.best_global_step and "eval_loss" in entry:
            return float(entry["eval_loss"])
    return None


def wins_tie(args, state, metrics: dict) -> bool:
    """True when `metrics` equals the best value so far and has a lower eval_loss than the best."""
    key = _key(args)
    if key is None or key == "eval_loss" or state.best_metric is None or state.best_global_step is None:
        return False
    value, loss = metrics.get(key), metrics.get("eval_loss")
    if value is None or loss is None or float(value) != float(state.best_metric):
        return False
    best_loss = best_eval_loss(state)
    return best_loss is not None and float(loss) < best_loss
