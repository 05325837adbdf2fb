"""Measuring what conversion cost: Keras float vs TFLite float32 vs the quantized TFLite, on held-out data.

Every TFLite model is run through the runtime's own classifier
(:class:`edge_runtime.classifier.EmotionClassifier`), so verification exercises
the exact code path of the device: the same preprocessing, input quantization
and output dequantization.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from convert.records import Comparison, DebugRow, Latency
from edge_runtime.classifier import EmotionClassifier
from edge_runtime.core.contract import load_contract
from edge_runtime.core.interpreter import make_interpreter
from edge_runtime.core.labels import LABELS
from lab.metrics import classification_report

log = logging.getLogger(__name__)


def tflite_probabilities(model_path: str | Path, images: np.ndarray, *, progress_label: str = "") -> np.ndarray:
    """Probabilities of a converted model (with its sidecar) on ``(N, 48, 48)`` uint8 images, single-threaded."""
    classifier = EmotionClassifier(make_interpreter(model_path, threads=1), load_contract(model_path))
    probabilities = np.empty((len(images), len(LABELS)), np.float32)
    step = max(1, len(images) // 4)
    for index, image in enumerate(images):
        probabilities[index] = classifier.probabilities(image)
        if progress_label and (index + 1) % step == 0:
            log.info("%s: %d/%d images", progress_label, index + 1, len(images))
    return probabilities


def latency_ms(model_path: str | Path, images: np.ndarray, repeats: int = 200) -> Latency:
    """Single-thread invoke latency per image (median and p90, ms) after a warm-up."""
    classifier = EmotionClassifier(make_interpreter(model_path, threads=1), load_contract(model_path))
    for image in images[:10]:
        classifier.probabilities(image)
    timings = []
    for index in range(repeats):
        started = time.perf_counter()
        classifier.probabilities(images[index % len(images)])
        timings.append((time.perf_counter() - started) * 1000)
    return Latency(float(np.median(timings)), float(np.percentile(timings, 90)), repeats)


NEAR_TIE_MARGIN = 0.05


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> Comparison:
    """Accuracy of both, per-class F1 change, top-1 agreement and mean absolute probability difference.

    Agreement is also given on the reference's *decisive* predictions (top-2
    probability margin above 0.05), with the share of near-ties: a weak model
    has many near-ties, which quantization noise flips without either model
    being more right.
    """
    reference_report = classification_report(labels, reference.argmax(1))
    candidate_report = classification_report(labels, candidate.argmax(1))
    ordered = np.sort(reference, axis=1)
    decisive = (ordered[:, -1] - ordered[:, -2]) > NEAR_TIE_MARGIN
    agree = reference.argmax(1) == candidate.argmax(1)
    return Comparison(
        accuracy_drop_pp=100 * (reference_report["accuracy"] - candidate_report["accuracy"]),
        macro_f1_drop_pp=100 * (reference_report["macro"]["f1"] - candidate_report["macro"]["f1"]),
        top1_agreement=float(agree.mean()),
        top1_agreement_decisive=float(agree[decisive].mean()) if decisive.any() else float("nan"),
        near_tie_share=float(1 - decisive.mean()),
        mean_abs_probability_difference=float(np.abs(reference - candidate).mean()),
        per_class_f1_change={name: candidate_report["per_class"][name]["f1"] - reference_report["per_class"][name]["f1"]
                             for name in LABELS})


def readable_tensor_name(name: str) -> str:
    """``NumericVerify/cnn_lstm_edge_1/lstm1_t10_input_1/BiasAdd1:1303`` -> ``lstm1_t10_input_1/BiasAdd1``.

    Drops the debugger's prefix, the graph's model scope and the tensor-index
    suffix, keeping the Keras layer name a user can find in the model summary.
    """
    name = name.removeprefix("NumericVerify/").split(";")[0]
    base, _, index = name.rpartition(":")
    name = base if index.isdigit() else name
    parts = name.split("/")
    return "/".join(parts[1:]) if len(parts) > 2 else name


def quantization_debug(keras_model, calibration: np.ndarray, debug_images: np.ndarray,
                       worst: int = 10) -> tuple[DebugRow, ...]:
    """Per-layer int8 error from ``tf.lite.experimental.QuantizationDebugger``, worst layers first.

    The error is the RMSE between each layer's float and quantized outputs
    divided by that layer's quantization scale: about 0.29 is the floor that
    ideal rounding gives; much larger means the layer's range is poorly
    captured (outliers, a wide distribution).
    """
    import tensorflow as tf

    from convert.quantize import int8_converter, representative_batches

    converter = int8_converter(keras_model, calibration, "int8")
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: representative_batches(debug_images))
    debugger.run()
    rows = []
    for name, stats in debugger.layer_statistics.items():
        scale = None
        for detail in debugger._quant_interpreter.get_tensor_details():  # the debugger has no public tensor lookup
            if detail["name"] == name:
                scale = detail["quantization_parameters"]["scales"]
                break
        scale_value = float(scale[0]) if scale is not None and len(scale) else 0.0
        rmse = float(np.sqrt(stats["mean_squared_error"]))
        rows.append(DebugRow(tensor=name[:160], layer=readable_tensor_name(name), rmse=rmse, scale=scale_value,
                             rmse_over_scale=rmse / scale_value if scale_value else float("nan"),
                             mean_error=float(stats["mean_error"]), max_abs_error=float(stats["max_abs_error"])))
    rows.sort(key=lambda row: -(row.rmse_over_scale if row.rmse_over_scale == row.rmse_over_scale else -1))
    return tuple(rows[:worst])
