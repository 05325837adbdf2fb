"""Quantization-aware training (QAT): a Keras model that computes, in float, what its full-int8 TFLite file computes.

Post-training quantization with plain min/max calibration flips ~4% of the
shipped model's top-1 predictions, mostly near-ties (docs/quantization.md).
QAT is the standard way to remove such a gap: the model is fine-tuned *with* int8 rounding
in its forward pass, so the model that is trained, selected on PublicTest and
reported on PrivateTest is the one the device runs. TF-MOT's QAT does not
support Keras 3, so this module builds the simulation itself:

- every tensor the int8 TFLite graph stores gets a :class:`FakeQuant` with the
  range post-training calibration would give it (min/max over the calibration
  images), or the fixed range TFLite requires (LOGISTIC and SOFTMAX outputs
  1/256 steps from 0, TANH 1/128 steps around 0, the uint8 input 0..255);
- weights are rounded in the forward pass as the converter rounds them
  (per output channel for convolutions, one scale per tensor for dense
  layers; symmetric, -127..127) and biases to the int32 grid of input scale x
  weight scale, with straight-through gradients;
- batch normalization is folded into the convolutions, as the converter does;
- LSTMs are written out as explicit gates and time steps, the same graph
  :mod:`convert.edge_graph` builds, with a fake quantization after each op.

The converter turns the FakeQuant ranges into the int8 model's quantization
parameters (no representative dataset), so the int8 file agrees with this
model up to float-order noise that flips a rounding now and then (99.55% top-1
agreement on PrivateTest for the shipped model's copy).

The same copy, not fine-tuned, is how ``fer-convert`` quantizes a model with
LSTMs: min/max calibration for every tensor as the converter would do it,
except the LSTM cell state, whose range is capped (``cell_range``; see
:data:`lab.explicit_lstm.DEFAULT_CELL_STATE_RANGE`).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import layers, ops

from edge_runtime.core.errors import FerError
from lab.explicit_lstm import CELL_STATE, DEFAULT_CELL_STATE_RANGE, explicit_lstm

log = logging.getLogger(__name__)

INPUT_RANGE = (0.0, 255.0)  # uint8 pixels, scale 1
LOGISTIC_RANGE = (0.0, 255 / 256)  # TFLite's int8 LOGISTIC and SOFTMAX output: scale 1/256, zero point -128
TANH_RANGE = (-1.0, 127 / 128)  # TFLite's int8 TANH output: scale 1/128, zero point 0


def int8_step(low: float, high: float) -> float:
    """The step of the 256-level grid spanning ``low..high`` widened to include 0, as FakeQuant and TFLite use it."""
    return (max(high, 0.0) - min(low, 0.0)) / 255


def _fake_quant(x, low: float, high: float):
    import tensorflow as tf

    # The TensorFlow op (not a Keras re-implementation): the TFLite converter reads its range.
    return tf.quantization.fake_quant_with_min_max_args(x, min=low, max=high, num_bits=8)


@keras.saving.register_keras_serializable(package="fer_edge")
class FakeQuant(layers.Layer):
    """Round to the int8 grid of a fixed range (widened to include 0); straight-through gradient inside the range."""

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(min(low, 0.0)), float(max(high, 0.0))

    @property
    def scale(self) -> float:
        """The int8 step of this range."""
        return int8_step(self.low, self.high)

    def call(self, inputs):
        return _fake_quant(inputs, self.low, self.high)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


def _round_to_grid(values, step):
    """``values`` rounded to multiples of ``step``, with the gradient of the identity."""
    return values + ops.stop_gradient(ops.round(values / step) * step - values)


def _weight_step(kernel, per_channel: bool):
    """The converter's symmetric int8 weight step: max |w| / 127, per output channel or per tensor."""
    axes = tuple(range(len(kernel.shape) - 1)) if per_channel else None
    step = ops.max(ops.abs(kernel), axis=axes) / 127.0
    return ops.stop_gradient(ops.where(step > 0, step, ops.ones_like(step)))


def _with_rounded_weights(layer, inputs, apply_kernel, per_channel: bool):
    """``layer``'s output (kernel, bias, activation) with kernel and bias rounded as the int8 converter rounds them.

    The bias goes to the int32 grid ``layer.input_scale * weight_step``; an
    ``input_scale`` of 0 leaves it in float.
    """
    step = _weight_step(layer.kernel, per_channel=per_channel)
    outputs = apply_kernel(inputs, _round_to_grid(layer.kernel, step))
    if layer.use_bias:
        bias = _round_to_grid(layer.bias, layer.input_scale * step) if layer.input_scale else layer.bias
        outputs = outputs + bias
    return layer.activation(outputs)


@keras.saving.register_keras_serializable(package="fer_edge")
class QuantizedDense(layers.Dense):
    """A Dense layer whose weights and bias are rounded as the int8 converter rounds them.

    ``input_scale`` is the int8 step of the layer's input; the bias is rounded
    to the int32 grid ``input_scale * weight_step`` (0 leaves it in float).
    """

    def __init__(self, units: int, input_scale: float = 0.0, **kwargs):
        super().__init__(units, **kwargs)
        self.input_scale = float(input_scale)

    def call(self, inputs):
        return _with_rounded_weights(self, inputs, ops.matmul, per_channel=False)

    def get_config(self):
        return {**super().get_config(), "input_scale": self.input_scale}


@keras.saving.register_keras_serializable(package="fer_edge")
class QuantizedConv2D(layers.Conv2D):
    """A Conv2D whose kernel is rounded per output channel and whose bias is rounded to the int32 grid."""

    def __init__(self, filters: int, kernel_size, input_scale: float = 0.0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.input_scale = float(input_scale)

    def call(self, inputs):
        return _with_rounded_weights(self, inputs, self.convolution_op, per_channel=True)

    def get_config(self):
        return {**super().get_config(), "input_scale": self.input_scale}


class _Builder:
    """Builds the int8-simulating graph of a float model; one pass measures ranges, the next fake-quantizes."""

    def __init__(self, ranges: dict[str, tuple[float, float]] | None, cell_range: float = 0.0):
        self.ranges = ranges
        self.cell_range = cell_range  # > 0: LSTM cell states get at most +-cell_range
        self.probes: dict[str, object] = {}
        self.scale = 0.0  # int8 step of the latest quantized tensor: the next weighted layer's input scale

    def quantize(self, x, name: str, fixed: tuple[float, float] | None = None):
        if self.ranges is None:
            x = layers.Identity(name=f"probe_{name}")(x)
            self.probes[name] = x
            self.scale = 0.0
            return x
        low, high = fixed or self.ranges[name]
        quantizer = FakeQuant(low, high, name=f"fq_{name}")
        self.scale = quantizer.scale
        return quantizer(x)

    def dense_layer(self, units: int, weights: list[np.ndarray], name: str, activation=None) -> QuantizedDense:
        layer = QuantizedDense(units, input_scale=self.scale, use_bias=len(weights) > 1, activation=activation,
                               name=name)
        layer.build((None, weights[0].shape[0]))
        layer.set_weights(weights)
        return layer

    def dense(self, x, units: int, weights: list[np.ndarray], name: str, activation=None):
        return self.dense_layer(units, weights, name, activation)(x)

    def conv_bn(self, conv, bn, x):
        """The convolution with the batch normalization folded in (the converter folds it the same way)."""
        kernel, bias = conv.get_weights() if conv.use_bias else (conv.get_weights()[0], 0.0)
        gamma, beta, mean, variance = bn.get_weights()
        factor = gamma / np.sqrt(variance + bn.epsilon)
        layer = QuantizedConv2D(conv.filters, conv.kernel_size, input_scale=self.scale, strides=conv.strides,
                                padding=conv.padding, name=conv.name)
        layer.build((None, None, None, kernel.shape[2]))
        layer.set_weights([kernel * factor, beta + (bias - mean) * factor])
        return layer(x)

    def lstm(self, lstm, sequence):
        """The LSTM as the converter's explicit gates and steps, every stored tensor rounded."""
        fixed = {"sigmoid": LOGISTIC_RANGE, "tanh": TANH_RANGE}
        for role, activation in (("gate", lstm.recurrent_activation), ("cell", lstm.activation)):
            if activation.__name__ not in fixed:
                raise FerError(f"layer {lstm.name}: {role} activation {activation.__name__} has no int8 simulation")
        return explicit_lstm(lstm, sequence, dense=self.dense_layer,
                             quantize=lambda x, name, output=None: self.quantize(x, name, self._fixed_range(
                                 name, output, fixed)))

    def _fixed_range(self, name: str, output: str | None, fixed: dict) -> tuple[float, float] | None:
        if output == CELL_STATE and self.cell_range > 0 and self.ranges is not None:
            low, high = self.ranges[name]
            return max(low, -self.cell_range), min(high, self.cell_range)
        return fixed.get(output)

    def build(self, model) -> keras.Model:
        inputs = keras.Input((48, 48, 1), name="pixels")
        x = self.quantize(inputs, "input", INPUT_RANGE)
        model_layers = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
        skip = set()
        for index, layer in enumerate(model_layers):
            if index in skip:
                continue
            following = model_layers[index + 1] if index + 1 < len(model_layers) else None
            if isinstance(layer, layers.Conv2D) and isinstance(following, layers.BatchNormalization):
                x = self.conv_bn(layer, following, x)  # the ReLU that follows quantizes the fused output
                skip.add(index + 1)
            elif isinstance(layer, (layers.ReLU, layers.Rescaling)):
                x = self.quantize(_copy(layer)(x), layer.name)
            elif isinstance(layer, layers.LSTM):
                x = self.lstm(layer, x)
            elif isinstance(layer, layers.Dense):
                if layer.activation is keras.activations.softmax:
                    x = self.quantize(self.dense(x, layer.units, layer.get_weights(), f"{layer.name}_logits"),
                                      f"{layer.name}_logits")
                    x = self.quantize(layers.Softmax(name=layer.name)(x), layer.name, LOGISTIC_RANGE)
                elif layer.activation in (keras.activations.relu, keras.activations.linear):
                    x = self.quantize(self.dense(x, layer.units, layer.get_weights(), layer.name,
                                                 activation=layer.activation), layer.name)
                else:
                    raise FerError(f"layer {layer.name}: activation {layer.activation.__name__} has no int8 simulation")
            elif isinstance(layer, (layers.MaxPooling2D, layers.Reshape, layers.Flatten, layers.Dropout)):
                x = _copy(layer)(x)  # the same scale in and out: nothing to round
            else:
                raise FerError(f"layer {layer.name} ({layer.__class__.__name__}) has no int8 simulation; "
                               "quantization-aware training supports the paper's models")
        return keras.Model(inputs, x, name=f"{model.name}_qat")


def _copy(layer):
    """A fresh, weightless copy of ``layer``, so that the new model shares no layer object with the float one."""
    return layer.__class__.from_config(layer.get_config())


def measure_ranges(model, calibration: np.ndarray) -> dict[str, tuple[float, float]]:
    """Min/max of every tensor the int8 graph stores, over ``calibration`` (``(N, 48, 48)`` uint8 Training images)."""
    builder = _Builder(None)
    probed = builder.build(model)
    names = list(builder.probes)
    outputs = [builder.probes[name] for name in names]
    values = keras.Model(probed.input, outputs).predict(calibration[..., None].astype(np.float32), batch_size=64,
                                                        verbose=0)
    values = values if isinstance(values, list) else [values]
    return {name: (float(np.min(v)), float(np.max(v))) for name, v in zip(names, values, strict=True)}


def quantization_aware_model(model, calibration: np.ndarray, *, cell_range: float = DEFAULT_CELL_STATE_RANGE,
                             ranges: dict[str, tuple[float, float]] | None = None) -> keras.Model:
    """The int8-simulating copy of a trained float ``model``, its ranges calibrated on ``calibration``.

    Every range is the min/max over ``calibration``, except that LSTM cell
    states keep at most +-``cell_range`` (0: their min/max too). Its
    predictions are those of the int8 model the converter will make from it;
    fine-tune it with ``fer-train fit --quantization-aware FLOAT.keras``.
    ``ranges`` from :func:`measure_ranges` on the same images saves measuring
    them again when several copies are built.
    """
    if cell_range < 0:
        raise FerError(f"cell-state range {cell_range:g} is negative; give a positive bound such as "
                       f"{DEFAULT_CELL_STATE_RANGE:g}, or 0 for plain min/max calibration")
    if is_quantization_aware(model):
        raise FerError(f"{model.name} is already quantization-aware; start from the float model it came from")
    if ranges is None:
        ranges = measure_ranges(model, calibration)
    qat = _Builder(ranges, cell_range).build(model)
    log.info("quantization-aware copy of %s: %d fake-quantized tensors (LSTM cell state %s)", model.name, len(ranges),
             f"within +-{cell_range:g}" if cell_range > 0 else "min/max")
    return qat


def is_quantization_aware(model) -> bool:
    """Whether ``model`` carries fake quantization (it was built by :func:`quantization_aware_model`)."""
    return any(isinstance(layer, FakeQuant) for layer in model.layers)
