"""Evaluation reports for trained Keras models, and the Table 8 comparison."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_runtime.core.errors import FerError
from lab.data import FerDataset
from lab.keras_io import predict_probabilities
from lab.metrics import classification_report, confusion_table, per_class_table
from lab.provenance import provenance, write_json
from train.paper import PAPER_NAMES, PAPER_PARAMETER_COUNTS

log = logging.getLogger(__name__)


def evaluate(model, dataset: FerDataset, split: str) -> dict:
    """The classification report of ``model`` on one split."""
    data = dataset.split(split)
    probabilities = predict_probabilities(model, data.images)
    report = classification_report(data.labels, probabilities.argmax(axis=1))
    report["split"] = split
    return report


def write_report(report: dict, out_dir: str | Path, title: str, history: list[dict] | None = None,
                 extra: dict | None = None) -> Path:
    """Write ``metrics.json``, ``confusion.png``, ``learning_curves.png`` (with a history) and ``report.md``."""
    from lab.plots import plot_confusion, plot_learning_curves

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, **(extra or {}), "results": report, "provenance": provenance()}
    if history:
        payload["history"] = history
    write_json(out_dir / "metrics.json", payload)
    plot_confusion(report, out_dir / "confusion.png", f"{title}: {report['split']}")
    sections = [f"# {title}", "",
                f"{report['split']}: accuracy **{report['accuracy']:.4f}**, macro-F1 **{report['macro']['f1']:.4f}** "
                f"on {report['images']} images.", "", per_class_table(report), "", "Confusion matrix (counts):", "",
                confusion_table(report), "", "![confusion](confusion.png)"]
    if history:
        plot_learning_curves(history, out_dir / "learning_curves.png", title)
        sections += ["", "![learning curves](learning_curves.png)"]
    (out_dir / "report.md").write_text("\n".join(sections) + "\n")
    log.info("%s on %s: accuracy %.4f, macro-F1 %.4f -> %s", title, report["split"], report["accuracy"],
             report["macro"]["f1"], out_dir)
    return out_dir


def comparison_table(metrics_files: list[str | Path]) -> str:
    """A Markdown table in the layout of the paper's Table 8, one row per model, honest PrivateTest numbers.

    Takes ``models/*.metrics.json`` (from ``fer-train export``) and ``reports/*/metrics.json`` (from
    ``fer-train evaluate``); refuses results of another split, which the table would pass off as PrivateTest.
    """
    lines = ["| Model | Parameters | Epochs (best) | Accuracy | Precision | Recall | F1-score | Weighted F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in metrics_files:
        payload = json.loads(Path(path).read_text())
        results = payload.get("PrivateTest") or payload.get("results")
        if not results or "macro" not in results:
            raise FerError(f"{path} holds no evaluation results; pass a metrics JSON written by `fer-train export` "
                           "or `fer-train evaluate`")
        split = results.get("split", "PrivateTest")
        if split != "PrivateTest":
            raise FerError(f"{path} holds {split} results, but the table compares PrivateTest; re-run "
                           "`fer-train evaluate MODEL --split PrivateTest`")
        model_name = payload.get("model", "")
        name = payload.get("paper_name") or PAPER_NAMES.get(model_name) or payload.get("title")
        parameters = payload.get("parameters", PAPER_PARAMETER_COUNTS.get(model_name, 0))
        training = payload.get("training", {})
        epochs_run = training.get("epochs_run", payload.get("epochs_run", "?"))
        best_epoch = training.get("best_epoch", payload.get("best_epoch", "?"))
        epochs = f"{epochs_run} ({best_epoch})"
        macro, weighted = results["macro"], results["weighted"]
        lines.append(f"| {name} | {parameters:,} | {epochs} | {results['accuracy']:.4f} | {macro['precision']:.4f} | "
                     f"{macro['recall']:.4f} | {macro['f1']:.4f} | {weighted['f1']:.4f} |")
    return "\n".join(lines)
