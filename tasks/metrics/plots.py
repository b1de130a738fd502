"""PNG figures for metrics (matplotlib, headless)."""

from __future__ import annotations

import numpy as np


def confusion_matrix_png(cm: np.ndarray, labels: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    size = min(2 + 0.5 * k, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels=[str(x)[:16] for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(k), labels=[str(x)[:16] for x in labels])
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
