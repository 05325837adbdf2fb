"""An LSTM written out as explicit gates and time steps, with the same weights.

One builder serves two users: :mod:`convert.edge_graph`, whose float graph
quantizes to pure int8 and maps to the Edge TPU (see there why Keras' own
unrolled LSTM does not), and :mod:`lab.quantization`, whose
quantization-aware copy rounds every tensor that graph stores.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.core.errors import FerError

GATES = ("input", "forget", "cell", "output")  # Keras' order of the 4 gate blocks in kernel and bias
CELL_STATE = "cell_state"  # the ``output`` tag of the cell-state tensors (f*c and c) passed to ``quantize``
# The int8 range of the cell state, +-: min/max calibration lets the integrating units, which add ~1 per step and
# reach +-15 by step 16, set a step of 0.12 for every unit, too coarse for the units near 0 whose tanh(c) matters.
# Capping it at +-3 (tanh(3) = 0.995: the capped units are saturated already) took Model 3's int8 top-1 agreement
# on PublicTest from 96.5% to 98.4% in the simulation (+-2: 98.2%, +-4: 98.1%; docs/quantization.md).
DEFAULT_CELL_STATE_RANGE = 3.0


def _plain_dense(units: int, weights: list[np.ndarray], name: str):
    """A built Dense layer holding ``weights`` (kernel, and bias when given)."""
    from keras import layers

    dense = layers.Dense(units, use_bias=len(weights) > 1, name=name)
    dense.build((None, weights[0].shape[0]))
    dense.set_weights(weights)
    return dense


def _unchanged(tensor, name: str, output: str | None = None):
    return tensor


def explicit_lstm(lstm, sequence, *, dense=_plain_dense, quantize=_unchanged):
    """Run ``lstm`` over ``sequence`` (batch, time, features) as explicit ops; returns the last hidden state.

    ``dense(units, weights, name)`` makes the per-gate layers, which hold
    slices of the LSTM's kernel, recurrent kernel and bias. ``quantize(tensor,
    name, output)`` sees every tensor an int8 graph stores; ``output`` names
    the activation that produced it (``"sigmoid"``, ``"tanh"``), is
    :data:`CELL_STATE` for the cell state and its decayed copy f*c, or is None.
    The defaults build the float graph; :mod:`lab.quantization` passes
    rounding ones.
    """
    from keras import layers

    if lstm.return_sequences or lstm.go_backwards or lstm.stateful:
        raise FerError(f"layer {lstm.name}: only forward, last-state LSTMs can be rebuilt for int8")
    activation, recurrent_activation = lstm.activation, lstm.recurrent_activation
    kernel, recurrent, bias = [np.asarray(w) for w in lstm.get_weights()]
    units, prefix = lstm.units, lstm.name
    blocks = [slice(g * units, (g + 1) * units) for g in range(len(GATES))]
    # Every layer is made before any is applied (a quantization-aware layer reads its input's scale when made).
    # The input projection of all time steps at once: one FULLY_CONNECTED (and one bias tensor) per gate.
    input_layers = [dense(units, [kernel[:, block], bias[block]], f"{prefix}_{gate}_x")
                    for gate, block in zip(GATES, blocks, strict=True)]
    # One recurrent layer per gate, shared by every step as in the LSTM itself.
    recurrent_layers = [dense(units, [recurrent[:, block]], f"{prefix}_{gate}_h")
                        for gate, block in zip(GATES, blocks, strict=True)]
    projected = [quantize(layer(sequence), f"{prefix}_{gate}_x")
                 for gate, layer in zip(GATES, input_layers, strict=True)]
    hidden = cell = None
    for t in range(sequence.shape[1]):
        z = [gate_sequence[:, t, :] for gate_sequence in projected]
        if hidden is not None:  # skipped at t=0, where the state is zero
            from_hidden = [quantize(layer(hidden), f"{prefix}_t{t}_{gate}_h")
                           for gate, layer in zip(GATES, recurrent_layers, strict=True)]
            z = [quantize(layers.Add(name=f"{prefix}_t{t}_{gate}")([z_g, h_g]), f"{prefix}_t{t}_{gate}")
                 for gate, z_g, h_g in zip(GATES, z, from_hidden, strict=True)]
        gate_output, cell_output = recurrent_activation.__name__, activation.__name__
        i = quantize(recurrent_activation(z[0]), f"{prefix}_t{t}_i", gate_output)
        f = quantize(recurrent_activation(z[1]), f"{prefix}_t{t}_f", gate_output)
        g = quantize(activation(z[2]), f"{prefix}_t{t}_g", cell_output)
        o = quantize(recurrent_activation(z[3]), f"{prefix}_t{t}_o", gate_output)
        input_part = quantize(i * g, f"{prefix}_t{t}_ig")
        if cell is None:
            cell = input_part
        else:
            decayed = quantize(f * cell, f"{prefix}_t{t}_fc", CELL_STATE)
            cell = quantize(decayed + input_part, f"{prefix}_t{t}_c", CELL_STATE)
        hidden = quantize(o * quantize(activation(cell), f"{prefix}_t{t}_tc", cell_output), f"{prefix}_t{t}_h")
    return hidden
