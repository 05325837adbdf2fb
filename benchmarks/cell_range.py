"""Where int8 flips Model 3's predictions, and what capping the LSTM cell state's range buys; PublicTest only.

The int8 simulation of :mod:`lab.quantization` computes what the int8 file
computes (the converter takes its ranges), so tensors can be left in float one
group at a time to see which rounding flips the float model's top-1. Then the
cell-state cap (``fer-convert --cell-range``) is swept. Everything is measured
on PublicTest (the split that chooses), never on PrivateTest (the split that
reports):

    python benchmarks/cell_range.py --data FER2013

Results: benchmarks/results/cell_range.json and Markdown tables on stdout (docs/quantization.md).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Groups of fake-quantized tensors, by the names lab.quantization gives them (fq_<layer or step tensor>).
GROUPS = {
    "none: weights only": r"(?!)",
    "everything": r".",
    "conv trunk (input, ReLUs)": r"^fq_(input|rescale|c\d_relu)$",
    "lstm1, all tensors": r"^fq_lstm1_",
    "lstm1 cell state (f*c, c)": r"^fq_lstm1_t\d+_(fc|c)$",
    "lstm1 other tensors": r"^fq_lstm1_(?!t\d+_(fc|c)$)",
    "lstm2, all tensors": r"^fq_lstm2_",
    "dense head (fc, logits, softmax)": r"^fq_(fc|probs_logits|probs)$",
}
CELL_RANGES = (0.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _agreement(model, images: np.ndarray, reference_top1: np.ndarray, labels: np.ndarray) -> dict:
    probabilities = np.asarray(model.predict(images[..., None].astype(np.float32), batch_size=256, verbose=0))
    top1 = probabilities.argmax(1)
    return {"top1_agreement": float(np.mean(top1 == reference_top1)), "accuracy": float(np.mean(top1 == labels))}


def _with_only(model, pattern: str):
    """A copy of the simulation in which only the FakeQuants matching ``pattern`` round (weights still round)."""
    import keras

    from lab.quantization import FakeQuant

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, FakeQuant) and not re.search(pattern, layer.name):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 (CSV or image-folder root)")
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm.keras"))
    parser.add_argument("--calibration-dir", default=str(ROOT / "calibration_data"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cell_range.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from lab.calibration import MANIFEST_NAME, manifest_images
    from lab.data import load_fer2013
    from lab.keras_io import load_keras_model, predict_probabilities
    from lab.provenance import provenance, write_json
    from lab.quantization import measure_ranges, quantization_aware_model

    started = provenance()
    dataset = load_fer2013(args.data)
    calibration = manifest_images(dataset, Path(args.calibration_dir) / MANIFEST_NAME)
    public = dataset.split("PublicTest")
    model = load_keras_model(args.model)
    reference_top1 = predict_probabilities(model, public.images).argmax(1)
    float_accuracy = float(np.mean(reference_top1 == public.labels))

    ranges = measure_ranges(model, calibration)  # once: every copy below differs only in the cell-state cap
    copies = {cell_range: quantization_aware_model(model, calibration, cell_range=cell_range, ranges=ranges)
              for cell_range in CELL_RANGES}
    groups = {name: _agreement(_with_only(copies[0.0], pattern), public.images, reference_top1, public.labels)
              for name, pattern in GROUPS.items()}
    sweep = {f"{cell_range:g}": _agreement(copy, public.images, reference_top1, public.labels)
             for cell_range, copy in copies.items()}
    results = {"model": Path(args.model).name, "split": "PublicTest", "images": int(len(public)),
               "float_accuracy": float_accuracy, "calibration_images": int(len(calibration)),
               "rounded_groups_with_min_max_ranges": groups, "cell_range_sweep": sweep, "provenance": started}
    write_json(args.out, results)

    print(f"Float model on PublicTest: accuracy {float_accuracy:.4f} ({len(public)} images)\n")
    print("| tensors rounded to int8 (weights always), min/max ranges | top-1 agreement | accuracy |")
    print("|---|---:|---:|")
    for name, values in groups.items():
        print(f"| {name} | {values['top1_agreement']:.2%} | {values['accuracy']:.4f} |")
    print("\n| LSTM cell-state range (`--cell-range`) | top-1 agreement | accuracy |")
    print("|---|---:|---:|")
    for cell_range, values in sweep.items():
        label = "min/max (0)" if cell_range == "0" else f"+-{cell_range}"
        print(f"| {label} | {values['top1_agreement']:.2%} | {values['accuracy']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
