"""Emotion classification of preprocessed 48x48 faces with a TFLite interpreter.

A small adapter in the style of pycoral: input quantization and output
dequantization live in one pure helper each around a stock interpreter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.core.contract import ModelContract, TensorSpec, load_contract, verification_summary
from edge_runtime.core.errors import ModelError
from edge_runtime.core.interpreter import BACKENDS, EdgeTpuError, make_interpreter
from edge_runtime.core.preprocessing import TTA_MODES
from edge_runtime.core.records import setting

log = logging.getLogger(__name__)


def quantize_input(pixels: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Raw uint8 pixels -> the model's input dtype.

    A uint8 input with scale 1 and zero point 0 (what fer-convert produces)
    takes the pixels as they are; any other quantization is applied as the
    model says, so models from elsewhere still get correct inputs.
    """
    if spec.dtype == "float32":
        return pixels.astype(np.float32)
    if spec.dtype == "uint8" and spec.scale == 1.0 and spec.zero_point == 0:
        return pixels
    info = np.iinfo(np.dtype(spec.dtype))
    quantized = np.round(pixels.astype(np.float32) / spec.scale) + spec.zero_point
    return np.clip(quantized, info.min, info.max).astype(spec.dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The model's output tensor -> float32 probabilities."""
    if spec.scale == 0.0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)


class EmotionClassifier:
    """Runs one model on 48x48 uint8 faces; the contract says how to feed it and read it.

    With ``tta="flip"`` each face is also classified mirrored and the two
    probability vectors are averaged (test-time augmentation: two invokes per
    face; docs/benchmarks.md has its accuracy gain and cost).
    """

    def __init__(self, interpreter, contract: ModelContract, *, tta: str = "none"):
        if tta not in TTA_MODES:
            raise ModelError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")
        self.interpreter = interpreter
        self.contract = contract
        self.tta = tta
        self.labels = contract.labels
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        actual_input = tuple(int(d) for d in input_detail["shape"])
        if actual_input != tuple(contract.input.shape) or np.dtype(input_detail["dtype"]).name != contract.input.dtype:
            raise ModelError(f"model input is {list(actual_input)} {np.dtype(input_detail['dtype']).name}, but its "
                             f"metadata says {list(contract.input.shape)} {contract.input.dtype}; the sidecar belongs "
                             "to another model: reconvert")
        self._input_index = input_detail["index"]
        self._output_index = output_detail["index"]

    @classmethod
    def from_file(cls, model_path: str | Path, *, threads: int = 1, backend: str = "cpu",
                  fallback_to_cpu: bool = True, tta: str = "none") -> "EmotionClassifier":
        """Load a converted model and its contract.

        A model compiled for the Edge TPU runs only there: on the CPU (asked
        for, or as the fallback when the Edge TPU cannot be used) its sidecar's
        ``cpu_model``, the int8 file it was compiled from, runs instead.
        """
        model_path = Path(model_path)
        contract = load_contract(model_path)
        classifier = cls._load(model_path, contract, threads=threads, backend=backend,
                               fallback_to_cpu=fallback_to_cpu, tta=tta)
        # Said only now: the file matched its sidecar's hash, loaded, and has the tensors the sidecar describes.
        level, line = verification_summary(classifier.contract, model_path.name)
        if tta == "flip":  # the figure above is the plain one; this run classifies each face mirrored too
            line += "; this run uses flip TTA (model.tta), which scores higher (docs/benchmarks.md)"
        log.log(level, line)
        return classifier

    @classmethod
    def _load(cls, model_path: Path, contract: ModelContract, *, threads: int, backend: str, fallback_to_cpu: bool,
              tta: str) -> "EmotionClassifier":
        if contract.edgetpu_compiled:
            if backend == "edgetpu":
                try:
                    interpreter = make_interpreter(model_path, threads=threads, backend="edgetpu",
                                                   fallback_to_cpu=False)
                    return cls(interpreter, contract, tta=tta)
                except EdgeTpuError as error:
                    if not fallback_to_cpu:
                        raise
                    log.warning("%s; falling back to the CPU", error)
            model_path, contract = _cpu_twin(model_path, contract)
            backend = "cpu"
        interpreter = make_interpreter(model_path, threads=threads, backend=backend, fallback_to_cpu=fallback_to_cpu)
        return cls(interpreter, contract, tta=tta)

    def _invoke(self, face: np.ndarray) -> np.ndarray:
        pixels = face.reshape(self.contract.input.shape)
        self.interpreter.set_tensor(self._input_index, quantize_input(pixels, self.contract.input))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self._output_index), self.contract.output)[0]

    def probabilities(self, face: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, label order) for one preprocessed ``48x48`` uint8 face."""
        if self.tta == "flip":
            return (self._invoke(face) + self._invoke(np.ascontiguousarray(face[:, ::-1]))) / 2
        return self._invoke(face)


def _cpu_twin(model_path: Path, contract: ModelContract) -> tuple[Path, ModelContract]:
    """The int8 file an Edge TPU model was compiled from, which the CPU can run, and its contract."""
    twin = model_path.parent / contract.cpu_model if contract.cpu_model else None
    if twin is None or not twin.is_file():
        raise ModelError(f"{model_path.name} is compiled for the Edge TPU and cannot run on the CPU, and the int8 "
                         f"model it was compiled from ({contract.cpu_model or 'not named in its sidecar'}) is not "
                         f"next to it; copy it there or pass --model with it")
    log.info("running %s on the CPU in place of %s (the same int8 graph)", twin.name, model_path.name)
    return twin, load_contract(twin)


def packaged_model() -> Path:
    """The int8 Model 3 shipped inside the package (a copy of ``models/fer_cnn_lstm_int8.tflite``, with its sidecar)."""
    from importlib.resources import files

    return Path(str(files("edge_runtime").joinpath("models", "fer_cnn_lstm_int8.tflite")))


@dataclass(frozen=True)
class ModelConfig:
    """The ``[model]`` section: which model, on what, and how it is run."""

    path: str = setting("", "converted .tflite model (its .json sidecar must sit next to it); empty = the int8 Model 3 "
                        "inside the package")
    backend: str = setting("cpu", "inference backend", choices=BACKENDS)
    fallback_to_cpu: bool = setting(True, "run on the CPU when the Edge TPU is missing or the model is not compiled "
                                    "for it")
    threads: int = setting(1, "interpreter and OpenCV threads", minimum=1, maximum=64)
    tta: str = setting("flip", "test-time augmentation: flip also classifies the mirrored face and averages the "
                       "two (two invokes per face)", choices=TTA_MODES)

    @property
    def file(self) -> Path:
        """The model file to load: ``path``, or the packaged model when it is empty."""
        return Path(self.path) if self.path else packaged_model()
