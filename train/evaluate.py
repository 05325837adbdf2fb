"""Evaluation reports for trained Keras models, the shipped-model export, and the Table 8 comparison."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from edge_runtime.errors import FerError, ModelError
from train.data import FerDataset
from train.metrics import classification_report, confusion_table, per_class_table
from train.models import PAPER_NAMES, PAPER_PARAMETER_COUNTS
from train.provenance import file_sha256, provenance, write_json

log = logging.getLogger(__name__)


def load_keras_model(path: str | Path):
    """Load a ``.keras`` model with a clear error for a missing or unreadable file."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; train one with `fer-train fit` or pass the right path")
    if path.suffix != ".keras":
        raise ModelError(f"{path} is not a .keras model file; pass the .keras file written by `fer-train fit`")
    import train.quantization as _qat_layers  # noqa: F401  (registers the quantization-aware layers for loading)

    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for corrupt archives
        raise ModelError(f"cannot load Keras model {path}: {error.__class__.__name__}: {str(error)[:200]}") from None


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for ``(N, 48, 48)`` uint8 images (raw pixels, as every project model expects)."""
    from train.fit import to_model_input

    return np.asarray(model.predict(to_model_input(images), batch_size=batch_size, verbose=0))


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
    from train.plots import plot_confusion, plot_learning_curves

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


def export_run(run_dir: str | Path, destination: str | Path, dataset: FerDataset, report_dir: str | Path) -> dict:
    """Ship a run's best checkpoint: copy it, evaluate it on PrivateTest, write ``<dest>.metrics.json`` and a report."""
    from train.fit import read_history

    run_dir, destination = Path(run_dir), Path(destination)
    state_file, best = run_dir / "state.json", run_dir / "best.keras"
    if not state_file.exists() or not best.exists():
        raise ModelError(f"{run_dir} holds no finished epoch (state.json and best.keras); run `fer-train fit` first")
    state = json.loads(state_file.read_text())
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, destination)
    model = load_keras_model(destination)
    private = evaluate(model, dataset, "PrivateTest")
    public = evaluate(model, dataset, "PublicTest")
    name = state["config"]["model"]
    float_parent = state["config"].get("quantization_aware", "")
    summary = {
        "model": name,
        "paper_name": PAPER_NAMES.get(name, name) + (", quantization-aware" if float_parent else ""),
        "parameters": int(model.count_params()),
        "file": destination.name,
        "sha256": file_sha256(destination),
        "training": {
            "commands": [p["command"] for p in state.get("provenance", [])],
            "git_commits": [p["git_commit"] for p in state.get("provenance", [])],
            **_epoch_summary(state),
            "stopped_early": bool(state.get("stopped_early")),
            "wall_seconds": state["wall_seconds"],
            "config": state["config"],
            "train_images": state["train_images"],
            "train_class_counts": state["train_class_counts"],
        },
        "warm_start": _warm_start(state["config"].get("init_weights", "")),
        # The float model a quantization-aware run fine-tuned; fer-convert compares the int8 model with it too.
        "quantization_aware_from": ({"file": float_parent, "sha256": file_sha256(float_parent)}
                                    if float_parent and Path(float_parent).is_file() else None),
        "PublicTest": {"accuracy": public["accuracy"], "macro_f1": public["macro"]["f1"]},
        "PrivateTest": private,
        "provenance": provenance(),
    }
    write_json(destination.with_suffix(".metrics.json"), summary)
    write_report(private, report_dir, f"{summary['paper_name']} ({destination.name})", read_history(run_dir),
                 {"model": name, "parameters": summary["parameters"], **_epoch_summary(state)})
    return summary


def _warm_start(init_weights: str) -> dict | None:
    """Provenance of the run a warm-started run began from (its state.json sits next to the weights)."""
    if not init_weights:
        return None
    state_file = Path(init_weights).parent / "state.json"
    if not state_file.exists():
        return {"weights": init_weights, "note": "no state.json beside the weights: origin unknown"}
    state = json.loads(state_file.read_text())
    return {"weights": init_weights, "epochs_run": state["epochs_done"], "wall_seconds": state["wall_seconds"],
            "commands": [p["command"] for p in state.get("provenance", [])],
            "git_commits": [p["git_commit"] for p in state.get("provenance", [])], "config": state["config"]}


def run_epochs(model_path: str | Path) -> dict:
    """``epochs_run`` and ``best_epoch`` of the run a checkpoint sits in (its ``state.json``), or ``{}`` if none."""
    state_file = Path(model_path).parent / "state.json"
    if not state_file.is_file():
        return {}
    return _epoch_summary(json.loads(state_file.read_text()))


def _epoch_summary(state: dict) -> dict:
    """The epoch counts of a run's ``state.json``, under the keys metrics files and the Table 8 layout use."""
    return {"epochs_run": state["epochs_done"], "best_epoch": state["best_epoch"]}


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
        epochs = f"{training.get('epochs_run', payload.get('epochs_run', '?'))} ({training.get('best_epoch', payload.get('best_epoch', '?'))})"
        macro, weighted = results["macro"], results["weighted"]
        lines.append(f"| {name} | {parameters:,} | {epochs} | {results['accuracy']:.4f} | {macro['precision']:.4f} | "
                     f"{macro['recall']:.4f} | {macro['f1']:.4f} | {weighted['f1']:.4f} |")
    return "\n".join(lines)
