"""The sweep page's figures as PNG bytes (matplotlib, drawn offline like suites/outputs' figures)."""

from __future__ import annotations

import logging
import math

from ..outputs.figures import png_bytes, pyplot

log = logging.getLogger("trainsuite")


def _scored(data: dict) -> list:
    return [t for t in data["trials"] if t["metric"] is not None and t["state"] in ("complete", "pruned")]


def history_png(data: dict):
    scored = _scored(data)
    if not scored:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    pick = max if data["direction"] == "maximize" else min
    for state, marker in (("complete", "o"), ("pruned", "x")):
        pts = [(t["number"], t["metric"]) for t in scored if t["state"] == state]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=state)
    done = sorted((t["number"], t["metric"]) for t in scored if t["state"] == "complete")
    if done:
        best, xs, ys = None, [], []
        for n, v in done:
            best = v if best is None else pick(best, v)
            xs.append(n)
            ys.append(best)
        ax.step(xs, ys, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(data["metric"])
    ax.legend(fontsize=8)
    return png_bytes(fig)


def parallel_png(data: dict):
    scored = [t for t in _scored(data) if t["params"]]
    keys = sorted({k for t in scored for k in t["params"]})
    if not scored or not keys:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    axes = keys + [data["metric"]]
    cols, labels = [], []
    for k in keys:  # each parameter scaled to [0, 1] (log where it spans a decade); a choice by its rank
        vals = [t["params"].get(k) for t in scored]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            lo, hi = min(vals), max(vals)
            log_scale = lo > 0 and hi / lo >= 10
            f = math.log10 if log_scale else float
            cols.append([(f(v) - f(lo)) / (f(hi) - f(lo)) if hi > lo else 0.5 for v in vals])
            labels.append(f"{k}\n{lo:.3g} to {hi:.3g}{' (log)' if log_scale else ''}")
        else:
            seen = sorted({str(v) for v in vals})
            cols.append([seen.index(str(v)) / max(1, len(seen) - 1) for v in vals])
            labels.append(f"{k}\n{', '.join(seen)}")
    metrics = [t["metric"] for t in scored]
    lo, hi = min(metrics), max(metrics)
    cols.append([(m - lo) / (hi - lo) if hi > lo else 0.5 for m in metrics])
    labels.append(f"{data['metric']}\n{lo:.4g} to {hi:.4g}")
    cmap = plt.get_cmap("viridis")
    for i in range(len(scored)):
        shade = cols[-1][i] if data["direction"] == "maximize" else 1 - cols[-1][i]
        ax.plot(range(len(axes)), [c[i] for c in cols], color=cmap(shade), alpha=0.8)
    ax.set_xticks(range(len(axes)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yticks([])
    ax.set_title("each line a trial; colour: the metric (yellow = better)", fontsize=9)
    return png_bytes(fig)


def importance(study) -> dict:
    """Optuna's fANOVA importances; empty when there are too few complete trials to say."""
    import optuna

    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError, ImportError) as exc:
        log.debug("sweep: no parameter importances (%s)", exc)
        return {}


def importance_png(imp: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(imp)))
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names])
    ax.set_xlabel("importance (share of the metric's variance)")
    return png_bytes(fig)
