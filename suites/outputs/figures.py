"""The figures of a run report (matplotlib, headless): training and evaluation curves, throughput,
memory and the confusion matrix, as PNG bytes. suites/outputs/report.py puts them on the page.

Every text is drawn literally (tasks/metrics/plots.py: `literal`, `drawing`): run names, metric and
class names come from the user and may hold `$`, which matplotlib would read as math."""

from __future__ import annotations

import io
import logging
import os
import re

log = logging.getLogger("trainsuite")

TRAIN_SERIES = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "samples_per_s", "peak_mem_gib",
                "peak_rss_gib")
# eval_* keys that are timings or counts, not metrics
EVAL_SKIP = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_num_tokens")
_TIMING = re.compile(r"runtime|per_second|preparation_time")


def is_metric(key: str) -> bool:
    return key.startswith("eval_") and key not in EVAL_SKIP and not _TIMING.search(key)


def train_series(history: list) -> dict:
    """name -> (steps, values) for the training log lines."""
    out = {}
    for row in history:
        if "loss" not in row and "learning_rate" not in row:
            continue
        for key in TRAIN_SERIES:
            if isinstance(row.get(key), (int, float)):
                out.setdefault(key, ([], []))
                out[key][0].append(row.get("step", 0))
                out[key][1].append(row[key])
    return out


def eval_series(history: list) -> dict:
    """eval_<metric> -> (steps, values), in first-seen order."""
    out = {}
    for row in history:
        for key, value in row.items():
            if is_metric(key) and isinstance(value, (int, float)):
                out.setdefault(key, ([], []))
                out[key][0].append(row.get("step", 0))
                out[key][1].append(value)
    return out


# ------------------------------------------------------------------ figures


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed); suites/sweep draws with it too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _literal(text) -> str:
    from tasks.metrics.plots import literal

    return literal(text)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes, closed afterwards (pages embed them; nothing is left open)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return buf.getvalue()


def _style(ax, title, ylabel=None):
    ax.set_title(_literal(title), fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    if ylabel:
        ax.set_ylabel(_literal(ylabel), fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def _plot(ax, xs, ys, label, style="-", color=None):
    marker = "o" if len(xs) <= 12 else None
    label = _literal(label)
    if label.startswith("_"):  # a legend leaves out labels that start with _ (a run named _tmp)
        label = " " + label
    ax.plot(xs, ys, style, marker=marker, markersize=3, label=label, color=color)


def curves(runs: list, colors: list) -> list:
    """(file name, title, png bytes) for loss, learning rate, throughput, memory and eval metrics;
    one run or several overlaid (one color per run)."""
    from tasks.metrics.plots import drawing

    with drawing():
        return _curves(runs, colors)


def _curves(runs: list, colors: list) -> list:
    plt = pyplot()
    many = len(runs) > 1
    trains = [train_series(r.log_history) for r in runs]
    evals = [eval_series(r.log_history) for r in runs]
    figs = []

    if any("loss" in t or "eval_loss" in e for t, e in zip(trains, evals)):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for r, t, e, c in zip(runs, trains, evals, colors):
            pre = f"{r.label} " if many else ""
            if "loss" in t:
                _plot(ax, *t["loss"], f"{pre}train", "-", c)
            if "eval_loss" in e:
                _plot(ax, *e["eval_loss"], f"{pre}eval", "--", c)
        _style(ax, "loss", "loss")
        ax.legend(fontsize=7)
        figs.append(("loss.png", "Loss (train solid, eval dashed)", png_bytes(fig)))

    def single(key, name, title, ylabel):
        if not any(key in t for t in trains):
            return
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for r, t, c in zip(runs, trains, colors):
            if key in t:
                _plot(ax, *t[key], r.label, "-", c)
        _style(ax, title, ylabel)
        if many:
            ax.legend(fontsize=7)
        figs.append((name, title, png_bytes(fig)))

    single("learning_rate", "learning_rate.png", "Learning rate", "lr")
    if any("tokens_per_s" in t or "samples_per_s" in t for t in trains):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, key, title in zip(axes, ("tokens_per_s", "samples_per_s"), ("tokens/s (real, non-pad)", "samples/s")):
            for r, t, c in zip(runs, trains, colors):
                if key in t:
                    _plot(ax, *t[key], r.label, "-", c)
            _style(ax, title)
            if many:
                ax.legend(fontsize=7)
        figs.append(("throughput.png", "Throughput per logging interval (training time only: evaluation "
                     "and checkpoint time left out)", png_bytes(fig)))
    mem = next((k for k in ("peak_mem_gib", "peak_rss_gib") if any(k in t for t in trains)), None)
    if mem:
        single(mem, "memory.png", "Peak GPU memory (GiB)" if mem == "peak_mem_gib" else "Peak process memory, RSS (GiB)",
               "GiB")

    metrics = []
    for e in evals:
        metrics += [k for k in e if k != "eval_loss" and k not in metrics]
    if metrics:
        ncols = min(3, len(metrics))
        nrows = (len(metrics) + ncols - 1) // ncols
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 0.4, 2.5 * nrows + 0.3), squeeze=False)
        for i, key in enumerate(metrics):
            ax = axes[i // ncols][i % ncols]
            for r, e, c in zip(runs, evals, colors):
                if key in e:
                    _plot(ax, *e[key], r.label, "-", c)
            _style(ax, key[len("eval_"):])
            if many and i == 0:
                ax.legend(fontsize=7)
        for j in range(len(metrics), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        figs.append(("eval_metrics.png", "Evaluation metrics over training", png_bytes(fig)))
    return figs


def confusion_png(confusion: dict) -> bytes | None:
    import tempfile

    import numpy as np

    from tasks.metrics.plots import confusion_matrix_png

    cm, labels = confusion.get("matrix"), confusion.get("labels")
    if not cm or not labels:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cm.png")
        confusion_matrix_png(np.array(cm), labels, path)
        with open(path, "rb") as fh:
            return fh.read()


def colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
