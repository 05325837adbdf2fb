"""Classification metrics in plain numpy (shared by training reports and the converter's verification)."""

from __future__ import annotations

import numpy as np

from edge_runtime.core.labels import LABELS, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] = LABELS) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrices.

    A class never predicted has precision 0 (and never present, recall 0): the
    convention of scikit-learn with ``zero_division=0``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    total = int(support.sum())
    weights = support / total if total else np.zeros_like(precision)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(labels)
    }
    row_sums = np.maximum(support[:, None], 1)
    return {
        "images": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "per_class": per_class,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted": {"precision": float((precision * weights).sum()), "recall": float((recall * weights).sum()),
                     "f1": float((f1 * weights).sum())},
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": (matrix / row_sums).round(4).tolist(),
    }


def per_class_table(report: dict) -> str:
    """A Markdown table of per-class precision, recall, F1 and support, with macro/weighted rows."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, row in report["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    for average in ("macro", "weighted"):
        row = report[average]
        lines.append(f"| *{average} avg* | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
                     f"| {report['images']} |")
    return "\n".join(lines)


def confusion_table(report: dict) -> str:
    """A Markdown confusion matrix (rows: true class, columns: predicted class)."""
    labels = report["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, row in zip(labels, report["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def mean_nll(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (its probability floored at 1e-12, so one sure mistake costs
    at most 27.6 rather than infinity)."""
    true_probability = np.asarray(probabilities, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.log(np.clip(true_probability, 1e-12, 1.0)).mean())


def confidence_summary(y_true: np.ndarray, probabilities: np.ndarray, low: float | None = None,
                       bins: int = 15) -> dict:
    """How sure a model is and whether that sureness is earned, from its class probabilities.

    ``mean_top``: the mean top probability; ``share_below_low`` (with ``low``): the share of images whose top
    probability is below ``low`` (the runtime's ``smoothing.threshold`` reads those as low confidence); ``ece``: the
    expected calibration error over ``bins`` equal bins of top probability (the support-weighted gap between
    confidence and accuracy); ``nll``: the mean negative log-likelihood of the true class. A student must be about
    as sure as the model the runtime's thresholds were set for, or its steady state drifts to ``uncertain``.
    """
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities, dtype=np.float64)
    top = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    which_bin = np.minimum((top * bins).astype(int), bins - 1)
    gap = sum(abs(top[which_bin == b].mean() - correct[which_bin == b].mean()) * np.count_nonzero(which_bin == b)
              for b in range(bins) if np.any(which_bin == b))
    summary = {"mean_top": float(top.mean()), "ece": float(gap / len(top)), "nll": mean_nll(y_true, probabilities)}
    if low is not None:
        summary.update(share_below_low=float((top < low).mean()), low=float(low))
    return summary
