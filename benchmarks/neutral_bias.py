"""Why subtle expressions read as neutral: the shipped int8 model's class bias on FER2013, and what a prior
correction would change.

For PublicTest and PrivateTest, through the runtime's own classifier (``--tta none`` and ``flip``):

- per-class recall, and where each class's misses go (the share that lands on neutral);
- each class's share of the predictions against its share of the labels (over-predicted classes absorb the others);
- the mean probability given to neutral on images of each class.

Then a logit adjustment: subtract ``strength * log(predicted share / label share)`` per class, with the strength
chosen on PublicTest for macro-F1, and report its PrivateTest figures once beside the uncorrected ones.

    python benchmarks/neutral_bias.py --data FER2013_DIR

Results: ``benchmarks/results/neutral_bias.json`` and Markdown on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.classifier import EmotionClassifier  # noqa: E402
from edge_runtime.core.labels import LABELS, NUM_CLASSES  # noqa: E402
from lab.data import load_fer2013  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

NEUTRAL = LABELS.index("neutral")
STRENGTHS = np.round(np.arange(0.0, 1.01, 0.1), 2)


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    scores = []
    for k in range(NUM_CLASSES):
        true_positive = np.sum((predicted == k) & (labels == k))
        precision = true_positive / max(1, np.sum(predicted == k))
        recall = true_positive / max(1, np.sum(labels == k))
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def figures(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, macro-F1, and per class: recall, share of misses on neutral, prediction vs label share, mean
    neutral probability."""
    predicted = probabilities.argmax(axis=1)
    per_class = {}
    for k, label in enumerate(LABELS):
        mine = labels == k
        misses = mine & (predicted != k)
        per_class[label] = {
            "recall": round(float(np.mean(predicted[mine] == k)), 4),
            "misses_on_neutral": round(float(np.sum(predicted[misses] == NEUTRAL) / max(1, misses.sum())), 4),
            "predicted_share": round(float(np.mean(predicted == k)), 4),
            "label_share": round(float(np.mean(mine)), 4),
            "mean_neutral_probability": round(float(probabilities[mine, NEUTRAL].mean()), 4)}
    return {"accuracy": round(float(np.mean(predicted == labels)), 4),
            "macro_f1": round(macro_f1(labels, predicted), 4), "per_class": per_class}


def adjusted(probabilities: np.ndarray, bias: np.ndarray, strength: float) -> np.ndarray:
    """Probabilities with each class's log-probability lowered by ``strength * bias`` (renormalized)."""
    logits = np.log(np.clip(probabilities, 1e-7, 1.0)) - strength * bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 (image folders or CSV)")
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    args = parser.parse_args()
    dataset = load_fer2013(args.data)
    results = {"tta": {}}
    for tta in ("none", "flip"):
        classifier = EmotionClassifier.from_file(args.model, tta=tta)
        split_probabilities = {}
        for split in ("PublicTest", "PrivateTest"):
            data = dataset.split(split)
            split_probabilities[split] = (data.labels, np.stack([classifier.probabilities(f) for f in data.images]))
        labels, public = split_probabilities["PublicTest"]
        predicted_share = np.bincount(public.argmax(1), minlength=NUM_CLASSES) / len(labels)
        bias = np.log(np.maximum(predicted_share, 1e-3) / (np.bincount(labels, minlength=NUM_CLASSES) / len(labels)))
        tuning = {float(s): macro_f1(labels, adjusted(public, bias, s).argmax(1)) for s in STRENGTHS}
        best = max(tuning, key=tuning.get)
        private_labels, private = split_probabilities["PrivateTest"]
        results["tta"][tta] = {
            "PublicTest": figures(labels, public), "PrivateTest": figures(private_labels, private),
            "bias_from_PublicTest": dict(zip(LABELS, np.round(bias, 4).tolist(), strict=True)),
            "strength_tuning_PublicTest_macro_f1": {str(k): round(v, 4) for k, v in tuning.items()},
            "chosen_strength": best,
            "PrivateTest_adjusted": figures(private_labels, adjusted(private, bias, best))}
    write_json(ROOT / "benchmarks" / "results" / "neutral_bias.json", {**provenance(), **results})
    for tta, result in results["tta"].items():
        before, after = result["PrivateTest"], result["PrivateTest_adjusted"]
        print(f"\nTTA {tta}: PrivateTest accuracy {before['accuracy']:.4f} / macro-F1 {before['macro_f1']:.4f}; "
              f"with the PublicTest-tuned adjustment (strength {result['chosen_strength']}): "
              f"{after['accuracy']:.4f} / {after['macro_f1']:.4f}\n")
        print("| class | recall | misses on neutral | predicted / label share | mean p(neutral) | recall adjusted |")
        print("|---|---:|---:|---:|---:|---:|")
        for label in LABELS:
            row, fixed = before["per_class"][label], after["per_class"][label]
            print(f"| {label} | {row['recall']:.3f} | {row['misses_on_neutral']:.3f} | {row['predicted_share']:.3f} / "
                  f"{row['label_share']:.3f} | {row['mean_neutral_probability']:.3f} | {fixed['recall']:.3f} |")


if __name__ == "__main__":
    main()
