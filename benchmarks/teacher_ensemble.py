"""What the distillation teachers know: each teacher and their averaged ensemble on PublicTest, plain and with
flip test-time augmentation.

The float Keras models of ``fer-train fit`` run folders (their ``best.keras``), on PublicTest only: the split the
teachers were selected on and the student will be selected on. PrivateTest is left for the shipped student's one
report. The ensemble's figure is the ceiling a student of the same teachers can hope to approach. With three teachers
or more, every smaller set of two or more is scored too, to choose the set. Each row also says how sure the
probabilities are (``lab.metrics.confidence_summary``, with the runtime's low-confidence line): a student learns the
sureness of its targets, and the runtime's thresholds were set for the shipped model's.

    python benchmarks/teacher_ensemble.py --data FER2013_DIR training_checkpoints/teacher_seed1 ...

Results: ``benchmarks/results/teacher_ensemble.json`` and Markdown on stdout (docs/training.md, "Distillation").
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.smoothing import SmoothingOptions  # noqa: E402
from lab.data import load_fer2013  # noqa: E402
from lab.keras_io import load_keras_model, predict_probabilities  # noqa: E402
from lab.metrics import classification_report, confidence_summary  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402
from train.distill import teacher_file  # noqa: E402

SPLIT = "PublicTest"


LOW_CONFIDENCE = SmoothingOptions().threshold


def figures(labels: np.ndarray, plain: np.ndarray, flipped: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class recall and confidence of one set of probabilities, without and with flip TTA
    (mean of both views)."""
    def scored(probabilities: np.ndarray) -> dict:
        report = classification_report(labels, probabilities.argmax(axis=1))
        return {"accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"],
                "recall": {name: row["recall"] for name, row in report["per_class"].items()},
                "confidence": confidence_summary(labels, probabilities, low=LOW_CONFIDENCE)}

    return {"plain": scored(plain), "flip": scored((plain + flipped) / 2)}


def main() -> None:
    """Score each teacher and their mean on PublicTest; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+", type=Path, help="run folders (their best.keras) or .keras files")
    parser.add_argument("--data", default=None, help="FER2013 (default: $FER2013_DIR)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_ensemble.json")
    args = parser.parse_args()

    split = load_fer2013(args.data).split(SPLIT)
    plain, flipped, rows = [], [], {}
    for teacher in args.teachers:
        model = load_keras_model(teacher_file(teacher))
        plain.append(predict_probabilities(model, split.images))
        flipped.append(predict_probabilities(model, split.images[:, :, ::-1]))
        rows[str(teacher)] = figures(split.labels, plain[-1], flipped[-1])
    rows["ensemble"] = figures(split.labels, np.mean(plain, axis=0), np.mean(flipped, axis=0))
    for size in range(2, len(args.teachers)):
        for chosen in itertools.combinations(range(len(args.teachers)), size):
            name = "ensemble of " + " + ".join(str(args.teachers[i]) for i in chosen)
            rows[name] = figures(split.labels, np.mean([plain[i] for i in chosen], axis=0),
                                 np.mean([flipped[i] for i in chosen], axis=0))

    print(f"| {SPLIT} | accuracy | macro-F1 | with flip TTA | macro-F1 with flip | mean top probability | "
          f"top below {LOW_CONFIDENCE} | ECE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        sureness = row["plain"]["confidence"]
        print(f"| {name} | {row['plain']['accuracy']:.2%} | {row['plain']['macro_f1']:.2%} | "
              f"{row['flip']['accuracy']:.2%} | {row['flip']['macro_f1']:.2%} | {sureness['mean_top']:.3f} | "
              f"{sureness['share_below_low']:.1%} | {sureness['ece']:.3f} |")
    write_json(args.out, {"split": SPLIT, "images": int(len(split.labels)), "results": rows,
                          "provenance": provenance()})


if __name__ == "__main__":
    main()
