"""An inference graph of a trained model that quantizes to pure int8 and maps to the Edge TPU.

Keras' unrolled LSTM converts to UNPACK (time steps) and one FULLY_CONNECTED
per step whose 4-gate output is SPLIT. The int8 quantizer cannot give the
SPLIT at the first step (zero state) a common scale and falls back to a float
island (DEQUANTIZE -> float SPLIT -> QUANTIZE); UNPACK and the float ops are
also what stops the Edge TPU compiler. This module rebuilds each LSTM with
the *same weights* as explicit gates: one FULLY_CONNECTED per gate projects
all time steps at once (one bias tensor per gate, which keeps the int8 file
small), STRIDED_SLICE picks each step, and one recurrent FULLY_CONNECTED per
gate and step follows, skipped at t=0 where the state is zero. Every resulting op is int8 and on the Edge TPU's list.

:func:`edge_friendly_model` checks the rebuilt graph against the original on
random inputs and refuses to continue if they differ.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import INPUT_SIZE
from lab.explicit_lstm import explicit_lstm

log = logging.getLogger(__name__)
MAX_ABS_DIFFERENCE = 1e-4


def batch_one_input():
    """The converted models' input: one raw-pixel face per invoke, a static shape the Edge TPU needs."""
    import keras

    return keras.Input(batch_shape=(1, INPUT_SIZE, INPUT_SIZE, 1), name="pixels")


def batch_one_model(model):
    """``model`` rebuilt flat on :func:`batch_one_input`, graph and weights unchanged.

    For ``--no-edge-graph`` and quantization-aware models. A clone rather than
    a wrapper: a nested model's name would prefix every tensor name the TFLite
    file stores (measured: 9 KB of Model 3's 574 KB int8 file).
    """
    import keras

    clone = keras.models.clone_model(model, input_tensors=batch_one_input())
    clone.set_weights(model.get_weights())
    return clone


def edge_friendly_model(model, *, check_samples: int = 16, seed: int = 0):
    """A batch-1 model computing what ``model`` computes, with every LSTM rebuilt as explicit int8-friendly ops.

    Models without LSTM layers are only re-wrapped with a static batch of 1.
    Raises :class:`FerError` if the rebuilt graph differs from the original by
    more than 1e-4 on random inputs.
    """
    import keras

    inputs = batch_one_input()
    x = inputs
    rebuilt = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.LSTM):
            x = explicit_lstm(layer, x)
            rebuilt += 1
        elif isinstance(layer, keras.layers.Dropout):
            continue  # identity at inference
        else:
            x = layer(x)
    edge_model = keras.Model(inputs, x, name=f"{model.name}_edge")
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, 256, (check_samples, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32)
    expected = np.asarray(model.predict(samples, verbose=0))
    actual = np.concatenate([np.asarray(edge_model(samples[i:i + 1], training=False)) for i in range(check_samples)])
    difference = float(np.abs(expected - actual).max())
    if difference > MAX_ABS_DIFFERENCE:
        raise FerError(f"the rebuilt inference graph of {model.name} differs from the model by {difference:.2e} "
                       f"(limit {MAX_ABS_DIFFERENCE}); convert without the rebuild (--no-edge-graph)")
    log.info("inference graph: %d LSTM layer(s) rebuilt as explicit gates (max difference %.1e)", rebuilt, difference)
    return edge_model
