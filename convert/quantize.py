"""Keras -> TFLite conversion in four modes: none (float32), float16, dynamic range, and full-integer int8.

The model is traced with a static batch of 1 (the Edge TPU needs static
shapes, and the runtime classifies one face per invoke). Full-integer int8
uses a representative dataset of raw 0..255 pixels, so the quantized input of
a uint8 model maps pixel values directly (scale 1, zero point 0) whenever the
calibration images span 0..255; the sidecar records the actual parameters and
the runtime applies whatever they are.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import INPUT_SIZE

log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")


def representative_batches(images: np.ndarray) -> Iterable[list[np.ndarray]]:
    """Yield one ``(1, 48, 48, 1)`` float32 raw-pixel sample at a time, as the TFLite calibrator wants."""
    for image in images:
        yield [image.reshape(1, INPUT_SIZE, INPUT_SIZE, 1).astype(np.float32)]


def int8_converter(model, calibration: np.ndarray | None, io_type: str):
    """A converter set up for full-integer int8 with ``calibration`` as the representative dataset."""
    import tensorflow as tf

    if calibration is None or len(calibration) == 0:
        raise FerError("int8 quantization needs a representative dataset: pass --data to build calibration_data/ "
                       "(`fer-convert calibration build --data FER2013`)")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_batches(calibration)
    # Only int8 builtin ops: conversion fails instead of leaving float kernels in the graph.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # One scale per dense weight tensor instead of one per output unit: the per-unit scales of the
    # unrolled LSTM's many FULLY_CONNECTED ops would otherwise add ~25% to the file (verified drop stays tiny).
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if io_type != "float32":
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    return converter


def quantization_aware_int8_converter(model, io_type: str):
    """A converter that takes every quantization parameter from a quantization-aware model's FakeQuant ops.

    No representative dataset: the ranges are part of the model (see
    :mod:`lab.quantization`). ``supported_ops`` is left at its default
    because TensorFlow's converter rejects INT8-only ops without a
    representative dataset even for such models; :func:`convert` checks the
    result for float ops instead.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # as the model rounds them
    if io_type != "float32":
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    return converter


def check_modes(mode: str, io_type: str) -> None:
    """Refuse an unknown quantization mode or int8 input/output type (``--quantize``, ``--io``)."""
    if mode not in QUANTIZE_MODES:
        raise FerError(f"unknown --quantize {mode!r}; choose one of {', '.join(QUANTIZE_MODES)}")
    if io_type not in IO_TYPES:
        raise FerError(f"unknown --io {io_type!r}; choose one of {', '.join(IO_TYPES)}")


def convert(model, mode: str, *, io_type: str = "uint8", calibration: np.ndarray | None = None,
            quantization_aware: bool = False) -> bytes:
    """Convert a Keras model (already batch-1, see :func:`convert.edge_graph.edge_friendly_model`).

    ``calibration`` (``(N, 48, 48)`` uint8) is required for ``int8`` unless the
    model is ``quantization_aware`` (its ranges are in the model); ``io_type``
    only applies to ``int8``: the other modes keep float32 input and output.
    """
    import tensorflow as tf

    check_modes(mode, io_type)
    if quantization_aware and mode in ("float16", "dynamic"):
        raise FerError(f"a quantization-aware model converts to int8 (or none, its float reference), not {mode}; "
                       "convert the float model it was fine-tuned from instead")
    if mode == "int8" and quantization_aware:
        converter = quantization_aware_int8_converter(model, io_type)
    elif mode == "int8":
        converter = int8_converter(model, calibration, io_type)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        content = converter.convert()
    except Exception as error:  # the converter raises ConverterError and plain exceptions alike
        raise FerError(f"TFLite conversion ({mode}) failed: {error}") from error
    if mode == "int8" and quantization_aware:
        from convert.inspect_tflite import float_ops

        # QUANTIZE/DEQUANTIZE only convert float32 I/O (--io float32); any other float op is an unquantized tensor.
        left_in_float = [op.name for op in float_ops(content) if op.name not in ("QUANTIZE", "DEQUANTIZE")]
        if left_in_float:
            raise FerError(f"the quantization-aware model left {len(left_in_float)} op(s) in float (first: "
                           f"{left_in_float[0]}); every tensor needs a FakeQuant: rebuild it with "
                           "`fer-train fit --quantization-aware FLOAT.keras`")
    return content
