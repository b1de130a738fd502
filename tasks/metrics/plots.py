"""PNG figures for metrics (matplotlib, headless).

Every text drawn (class names, run names, metric names) is drawn literally: matplotlib reads a text
with two `$` as math ($\\frac{$ fails to parse, a_b^c$x$ loses characters) and, with text.usetex set in
a user's matplotlibrc, hands every text to LaTeX. `literal()` escapes the `$`; `drawing()` turns
usetex off while a figure is built and saved.
"""

from __future__ import annotations

import contextlib

import numpy as np


def literal(text) -> str:
    """text as matplotlib draws it character for character (no math text)."""
    return str(text).replace("$", r"\$")


@contextlib.contextmanager
def drawing():
    """matplotlib, headless, with our own text settings whatever the user's matplotlibrc says."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"text.usetex": False}):
        yield


def confusion_matrix_png(cm: np.ndarray, labels: list[str], path: str) -> None:
    with drawing():
        import matplotlib.pyplot as plt

        k = len(labels)
        size = min(2 + 0.5 * k, 14)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(cm, cmap="Blues")
        names = [literal(str(x)[:16]) for x in labels]
        ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
        ax.set_yticks(range(k), labels=names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            top = cm.max() if cm.size else 0
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                            color="white" if cm[i, j] > top / 2 else "black", fontsize=8)
        ax.set_title("confusion matrix")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
