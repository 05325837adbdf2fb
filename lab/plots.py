"""PNG figures for reports: confusion matrices and learning curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and free a figure."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def plot_confusion(report: dict, path: str | Path, title: str) -> Path:
    """Counts and row-normalized confusion matrices side by side."""
    plt = pyplot()
    labels = report["labels"]
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for axis, key, fmt, name in ((axes[0], "confusion_matrix", "d", "counts"),
                                 (axes[1], "confusion_matrix_normalized", ".2f", "row-normalized (recall)")):
        matrix = np.asarray(report[key])
        image = axis.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(name)
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), value in np.ndenumerate(matrix):
            axis.text(col, row, format(value, fmt), ha="center", va="center", fontsize=8,
                      color="white" if value > threshold else "black")
    figure.suptitle(title)
    return _save(figure, path)


def plot_learning_curves(history: list[dict[str, float]], path: str | Path, title: str) -> Path:
    """Accuracy and loss per epoch, training vs PublicTest."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in ((axes[0], "accuracy"), (axes[1], "loss")):
        axis.plot(epochs, [row.get(metric, np.nan) for row in history], label=f"train {metric}")
        axis.plot(epochs, [row.get(f"val_{metric}", np.nan) for row in history], label=f"PublicTest {metric}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return _save(figure, path)
