"""The seed paper's three models (Tables 2, 3 and 4), exactly as published.

Every model takes raw 0..255 grayscale ``48x48x1`` input and scales it with a
``Rescaling`` layer (no parameters), so training, conversion and the runtime
share one input contract.

The LSTMs are built with ``unroll=True``. A plain Keras 3 LSTM converts to a
TFLite WHILE loop that fails at invoke and cannot be fully int8-quantized; the
unrolled LSTM becomes plain builtin ops (FULLY_CONNECTED, ADD, MUL, LOGISTIC,
TANH, ...), which quantize to full int8 and are the ops an Edge TPU can map.
The sequences are short (16 and 2 steps), so unrolling costs little.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
import numpy as np
from keras import layers, ops

from edge_runtime.errors import FerError
from edge_runtime.labels import NUM_CLASSES
from edge_runtime.preprocessing import INPUT_SIZE

INPUT_SHAPE = (INPUT_SIZE, INPUT_SIZE, 1)


def blur_taps(sigma: float) -> np.ndarray:
    """1-D Gaussian taps of ``sigma`` that an int8 converter stores exactly.

    Each tap is an integer count over the counts' sum, the largest count
    being 127: per-channel int8 weight quantization (scale = largest tap / 127)
    then represents every tap without rounding, and the taps sum to 1, so the
    quantized blur keeps the image's brightness. A Gaussian rounded to 8 bits
    the ordinary way loses its small tail taps and gains a brightness bias,
    which the converted model amplified into disagreement with the float one.
    """
    radius = max(1, math.ceil(3 * sigma))
    gaussian = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    counts = np.round(127 * gaussian / gaussian.max())
    nonzero = np.flatnonzero(counts)
    counts = counts[nonzero[0]:nonzero[-1] + 1]  # tails that round to 0 shrink the kernel symmetrically
    return (counts / counts.sum()).astype(np.float32)


def reflect_indices(size: int, radius: int) -> np.ndarray:
    """Indices that pad ``size`` samples by ``radius`` on each side, mirrored without repeating the edge.

    OpenCV's default border rule (BORDER_REFLECT_101), the one ``cv2.GaussianBlur``
    uses, so the blur matches the one :mod:`train.data_checks` estimates sigma with.
    """
    positions = np.abs(np.arange(-radius, size + radius))
    return np.where(positions >= size, 2 * (size - 1) - positions, positions).astype(np.int32)


@keras.saving.register_keras_serializable(package="fer_edge")
class InferenceBlur(layers.Layer):
    """A Gaussian blur applied at inference only; identity while training. No weights.

    For a dataset copy whose Training images are blurred while the held-out
    images are sharp (see :mod:`train.data_checks`): the model then sees, at
    inference, inputs as blurred as the ones it learned from. The borders are
    mirrored with a gather, then two 1-D depthwise convolutions without padding
    blur rows and columns. Every step is exact in an int8 model (the gather
    moves values, the taps come from :func:`blur_taps`) except the rounding of
    each pass's output, and all are ops the Edge TPU supports.
    """

    def __init__(self, sigma: float, size: int = 48, **kwargs):
        super().__init__(**kwargs)
        self.sigma, self.size = float(sigma), int(size)
        taps = blur_taps(self.sigma)
        radius = len(taps) // 2
        if radius >= self.size:
            raise FerError(f"an inference blur of sigma {self.sigma} reaches {radius} pixels, more than a "
                           f"{self.size}-pixel image can mirror; use a sigma below {self.size / 3:.0f}")
        self._row = taps.reshape(1, -1, 1, 1)
        self._column = taps.reshape(-1, 1, 1, 1)
        self._padded = reflect_indices(self.size, radius)

    def rows_pass(self, inputs):
        """The first pass: mirror the left and right borders, then blur along each row."""
        padded = ops.take(inputs, ops.convert_to_tensor(self._padded), axis=2)
        return ops.depthwise_conv(padded, ops.convert_to_tensor(self._row), padding="valid")

    def columns_pass(self, inputs):
        """The second pass: mirror the top and bottom borders, then blur along each column."""
        padded = ops.take(inputs, ops.convert_to_tensor(self._padded), axis=1)
        return ops.depthwise_conv(padded, ops.convert_to_tensor(self._column), padding="valid")

    def call(self, inputs, training=None):
        if training:
            return inputs
        return self.columns_pass(self.rows_pass(inputs))

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "size": self.size}


def blurs_input(model) -> bool:
    """Whether ``model`` (or a model nested in it) applies an :class:`InferenceBlur` to its input."""
    return any(isinstance(layer, InferenceBlur) or (hasattr(layer, "layers") and blurs_input(layer))
               for layer in model.layers)


def _conv_block(x, filters: int, padding: str, name: str):
    x = layers.Conv2D(filters, 3, padding=padding, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _inputs(inference_blur: float = 0.0) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if inference_blur > 0:
        x = InferenceBlur(inference_blur, name="inference_blur")(x)
    return inputs, x


def _hybrid_trunk(x):
    """The conv trunk shared by Models 2 and 3: 48x48x1 -> 4x4x128."""
    x = _conv_block(x, 32, "valid", "c1")
    x = _conv_block(x, 64, "same", "c2")
    x = layers.MaxPooling2D(name="pool1")(x)
    x = _conv_block(x, 64, "valid", "c3")
    x = _conv_block(x, 128, "same", "c4")
    x = layers.MaxPooling2D(name="pool2")(x)
    x = _conv_block(x, 128, "valid", "c5")
    return layers.MaxPooling2D(name="pool3")(x)


def build_cnn(inference_blur: float = 0.0) -> keras.Model:
    """Model 1 (Table 2): a small CNN, 117,031 parameters."""
    inputs, x = _inputs(inference_blur)
    x = _conv_block(x, 16, "valid", "c1")
    x = _conv_block(x, 32, "same", "c2")
    x = layers.MaxPooling2D(name="pool1")(x)
    x = _conv_block(x, 32, "valid", "c3")
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, name="fc")(x)
    x = layers.Dropout(0.6, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="cnn")


def _build_hybrid(name: str, sequence: tuple[int, int], units1: int, regroup: tuple[int, int], units2: int,
                  inference_blur: float = 0.0):
    inputs, x = _inputs(inference_blur)
    x = _hybrid_trunk(x)
    x = layers.Reshape(sequence, name="to_sequence")(x)
    x = layers.LSTM(units1, unroll=True, name="lstm1")(x)
    x = layers.Reshape(regroup, name="regroup")(x)
    x = layers.LSTM(units2, unroll=True, name="lstm2")(x)
    x = layers.Dense(200, activation="relu", name="fc")(x)
    x = layers.Dropout(0.6, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def build_cnn_lstm_small(inference_blur: float = 0.0) -> keras.Model:
    """Model 2 (Table 3): conv trunk -> (64,32) -> LSTM 32 -> (1,32) -> LSTM 32, 303,495 parameters."""
    return _build_hybrid("cnn_lstm_small", (64, 32), 32, (1, 32), 32, inference_blur)


def build_cnn_lstm(inference_blur: float = 0.0) -> keras.Model:
    """Model 3 (Table 4, the default): conv trunk -> (16,128) -> LSTM 128 -> (2,64) -> LSTM 64, 457,863 parameters."""
    return _build_hybrid("cnn_lstm", (16, 128), 128, (2, 64), 64, inference_blur)


MODEL_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "cnn_lstm_small": build_cnn_lstm_small,
    "cnn_lstm": build_cnn_lstm,
}
# The parameter counts printed in the seed paper's tables.
PAPER_PARAMETER_COUNTS = {"cnn": 117_031, "cnn_lstm_small": 303_495, "cnn_lstm": 457_863}
PAPER_NAMES = {"cnn": "Model 1 (CNN)", "cnn_lstm_small": "Model 2 (CNN+LSTM small)", "cnn_lstm": "Model 3 (CNN+LSTM)"}


def build_model(name: str, inference_blur: float = 0.0) -> keras.Model:
    """Build one of the paper's models by name (``cnn``, ``cnn_lstm_small``, ``cnn_lstm``).

    ``inference_blur`` > 0 adds an :class:`InferenceBlur` of that sigma after the rescaling (no parameters).
    """
    if name not in MODEL_BUILDERS:
        raise FerError(f"unknown model {name!r}; choose one of {', '.join(MODEL_BUILDERS)}")
    if inference_blur < 0:
        raise FerError(f"--inference-blur must be 0 (off) or a positive sigma in pixels, got {inference_blur}")
    return MODEL_BUILDERS[name](inference_blur)


def copy_weights(source, target) -> int:
    """Copy weights layer by layer (matched by name) from ``source`` into ``target``; returns layers copied."""
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            target_layer = target.get_layer(layer.name)
        except ValueError:
            raise FerError(f"cannot initialize from {source.name}: layer {layer.name!r} has no counterpart") from None
        target_layer.set_weights(weights)
        copied += 1
    return copied
