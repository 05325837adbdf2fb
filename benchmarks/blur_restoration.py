"""How much of a blurred face the runtime's blur restoration gives back, and where its table comes from.

The models learnt on sharp FER2013 faces; a defocused camera, motion or a small face upscaled hands them a blurred
one, and the placed-face benchmark (pipeline_accuracy.py) loses most there. ``edge_runtime.core.preprocessing``
measures each 48x48 crop's sharpness and sharpens it by an unsharp mask whose strength follows that measure
(``restore_blur``; ``detector.restore_blur``). This benchmark, for Gaussian blurs of sigma 0..2 pixels at 48x48:

1. the median sharpness of Training faces blurred by each sigma (what the measure reads at that blur);
2. the PublicTest accuracy of faces blurred by each sigma and sharpened by each fixed strength, and the best
   strength: together with 1, the (sharpness, strength) points of ``SHARPEN_TABLE``;
3. the PublicTest accuracy at each sigma without restoration and with ``restore_blur`` as shipped (its table).

All through the runtime's classifier without TTA. PrivateTest is not read: the end-to-end figure is the placed-face
benchmark's.

    python benchmarks/blur_restoration.py --data FER2013_DIR

Results: ``benchmarks/results/blur_restoration.json`` and Markdown on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.classifier import EmotionClassifier  # noqa: E402
from edge_runtime.core.preprocessing import SHARPEN_TABLE, restore_blur, sharpness, unsharp  # noqa: E402
from lab.data import load_fer2013  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
STRENGTHS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
TRAINING_SAMPLE = 3000


def blurred(face: np.ndarray, sigma: float) -> np.ndarray:
    """``face`` under a Gaussian blur of ``sigma`` pixels (itself for 0)."""
    return cv2.GaussianBlur(face, (0, 0), sigma) if sigma > 0 else face


def accuracy(classifier: EmotionClassifier, faces, labels: np.ndarray) -> float:
    """The share of ``faces`` whose top class is their label."""
    predicted = np.array([int(np.argmax(classifier.probabilities(face))) for face in faces])
    return round(float(np.mean(predicted == labels)), 4)


def measure(classifier: EmotionClassifier, training, public) -> dict:
    """Per sigma: median Training sharpness, PublicTest accuracy per strength (and the best), and PublicTest
    accuracy without restoration and with ``restore_blur``."""
    rows = {}
    for sigma in SIGMAS:
        median = float(np.median([sharpness(blurred(face, sigma)) for face in training]))
        faces = [blurred(face, sigma) for face in public.images]
        by_strength = {str(s): accuracy(classifier, [unsharp(f, s) for f in faces], public.labels) for s in STRENGTHS}
        best = max(by_strength, key=by_strength.get)
        rows[str(sigma)] = {"median_training_sharpness": round(median, 4), "accuracy_by_strength": by_strength,
                            "best_strength": float(best), "unrestored": by_strength["0.0"],
                            "restored": accuracy(classifier, [restore_blur(f) for f in faces], public.labels)}
        print(f"sigma {sigma}: {rows[str(sigma)]}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 (image folders or CSV)")
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "blur_restoration.json"))
    args = parser.parse_args()
    started = provenance()
    dataset = load_fer2013(args.data)
    train = dataset.split("Training")
    training = train.images[np.random.default_rng(0).permutation(len(train))[:TRAINING_SAMPLE]]
    rows = measure(EmotionClassifier.from_file(args.model, tta="none"), training, dataset.split("PublicTest"))
    write_json(args.out, {**started, "training_sample": TRAINING_SAMPLE, "sharpen_table": SHARPEN_TABLE,
                          "sigmas": rows})
    print("| blur sigma (48 px) | median sharpness (Training) | best strength (PublicTest) | accuracy at best | "
          "unrestored | restored (`restore_blur`) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for sigma, row in rows.items():
        best = row["accuracy_by_strength"][str(row["best_strength"])]
        print(f"| {sigma} | {row['median_training_sharpness']:.3f} | {row['best_strength']:g} | {best:.4f} | "
              f"{row['unrestored']:.4f} | {row['restored']:.4f} |")


if __name__ == "__main__":
    main()
