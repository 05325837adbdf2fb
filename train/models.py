"""The seed paper's three models (Tables 2, 3 and 4), exactly as published, and a larger teacher for distillation.

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

from typing import Callable

import keras
from keras import layers

from edge_runtime.core.errors import FerError
from edge_runtime.core.labels import NUM_CLASSES
from edge_runtime.core.preprocessing import INPUT_SIZE

INPUT_SHAPE = (INPUT_SIZE, INPUT_SIZE, 1)


def _conv_block(x, filters: int, padding: str, name: str):
    x = layers.Conv2D(filters, 3, padding=padding, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=INPUT_SHAPE, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


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


def build_cnn() -> keras.Model:
    """Model 1 (Table 2): a small CNN, 117,031 parameters."""
    inputs, x = _inputs()
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


def _build_hybrid(name: str, sequence: tuple[int, int], units1: int, regroup: tuple[int, int], units2: int):
    inputs, x = _inputs()
    x = _hybrid_trunk(x)
    x = layers.Reshape(sequence, name="to_sequence")(x)
    x = layers.LSTM(units1, unroll=True, name="lstm1")(x)
    x = layers.Reshape(regroup, name="regroup")(x)
    x = layers.LSTM(units2, unroll=True, name="lstm2")(x)
    x = layers.Dense(200, activation="relu", name="fc")(x)
    x = layers.Dropout(0.6, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def build_cnn_lstm_small() -> keras.Model:
    """Model 2 (Table 3): conv trunk -> (64,32) -> LSTM 32 -> (1,32) -> LSTM 32, 303,495 parameters."""
    return _build_hybrid("cnn_lstm_small", (64, 32), 32, (1, 32), 32)


def build_cnn_lstm() -> keras.Model:
    """Model 3 (Table 4, the default): conv trunk -> (16,128) -> LSTM 128 -> (2,64) -> LSTM 64, 457,863 parameters."""
    return _build_hybrid("cnn_lstm", (16, 128), 128, (2, 64), 64)


def build_teacher_vgg() -> keras.Model:
    """A teacher for distillation (issue 23), not a paper model: four VGG-style stages of two 3x3 convolutions
    (64, 128, 256, 512 filters, batch-normalized, no conv bias) with max pooling, global average pooling and dropout,
    4,693,575 parameters. An epoch of training takes about 2.5 times as long as Model 3's here."""
    inputs, x = _inputs()
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"s{stage}c{conv}_conv")(x)
            x = layers.BatchNormalization(name=f"s{stage}c{conv}_bn")(x)
            x = layers.ReLU(name=f"s{stage}c{conv}_relu")(x)
        x = layers.MaxPooling2D(name=f"pool{stage}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="teacher_vgg")


MODEL_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "cnn_lstm_small": build_cnn_lstm_small,
    "cnn_lstm": build_cnn_lstm,
    "teacher_vgg": build_teacher_vgg,
}


def build_model(name: str) -> keras.Model:
    """Build a model by name: the paper's ``cnn``, ``cnn_lstm_small``, ``cnn_lstm``, or the ``teacher_vgg`` teacher."""
    if name not in MODEL_BUILDERS:
        raise FerError(f"unknown model {name!r}; choose one of {', '.join(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name]()


def copy_weights(source, target) -> int:
    """Copy weights layer by layer (matched by name) from ``source`` into ``target``; returns layers copied."""
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            target_layer = target.get_layer(layer.name)
        except ValueError as error:
            raise FerError(f"cannot initialize from {source.name}: layer {layer.name!r} has no counterpart") from error
        target_layer.set_weights(weights)
        copied += 1
    return copied
