"""The model contract: what a ``.tflite`` file expects and promises, stored in a JSON sidecar.

The converter writes ``<model>.json`` next to ``<model>.tflite``; the runtime
reads it and refuses a model that does not fit (wrong input size, class count,
preprocessing version, or no sidecar at all) before the first frame.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_runtime.core.errors import ModelError
from edge_runtime.core.labels import LABELS
from edge_runtime.core.preprocessing import INPUT_SIZE, PREPROCESSING_VERSION

CONTRACT_FORMAT = "fer-edge-model/1"


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and affine quantization (``real = scale * (q - zero_point)``; scale 0 = not quantized)."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class ModelContract:
    """Everything the runtime needs to know about a converted model."""

    labels: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    preprocessing: str
    quantization: str
    source_model: str = ""
    source_sha256: str = ""
    verified: dict = field(default_factory=dict)
    format: str = CONTRACT_FORMAT
    # Written by edgetpu_compiler (fer-convert --edgetpu): the Edge TPU runs it; the CPU runs ``cpu_model`` instead,
    # the int8 file it was compiled from (same graph, same verification), which sits next to it.
    edgetpu_compiled: bool = False
    cpu_model: str = ""

    def to_json(self) -> str:
        """The sidecar's JSON text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def sidecar_path(model_path: str | Path) -> Path:
    """``models/x.tflite`` -> ``models/x.json``."""
    return Path(model_path).with_suffix(".json")


def write_contract(model_path: str | Path, contract: ModelContract) -> Path:
    """Write the sidecar next to ``model_path``."""
    path = sidecar_path(model_path)
    path.write_text(contract.to_json())
    return path


def _tensor(raw: dict, where: str) -> TensorSpec:
    try:
        return TensorSpec(tuple(int(d) for d in raw["shape"]), str(raw["dtype"]), float(raw.get("scale", 0.0)),
                          int(raw.get("zero_point", 0)))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{where}: malformed tensor description ({error}); re-run fer-convert") from error


def load_contract(model_path: str | Path) -> ModelContract:
    """Read and validate the sidecar of ``model_path``; raise :class:`ModelError` saying what does not fit."""
    path = sidecar_path(model_path)
    if not Path(model_path).is_file():
        raise ModelError(f"model file not found: {model_path}; pass --model (or model.path) with a .tflite written "
                         "by fer-convert")
    if not path.is_file():
        raise ModelError(f"{model_path} has no metadata sidecar {path.name}; convert the model with fer-convert, "
                         "which writes the labels, input size and quantization the runtime needs")
    try:
        raw = json.loads(path.read_text())
        contract = ModelContract(
            labels=tuple(raw["labels"]), input=_tensor(raw["input"], f"{path} input"),
            output=_tensor(raw["output"], f"{path} output"), preprocessing=raw["preprocessing"],
            quantization=raw["quantization"], source_model=raw.get("source_model", ""),
            source_sha256=raw.get("source_sha256", ""), verified=raw.get("verified", {}),
            format=raw.get("format", ""), edgetpu_compiled=bool(raw.get("edgetpu_compiled", False)),
            cpu_model=str(raw.get("cpu_model", "")))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: unreadable model metadata ({error.__class__.__name__}: {error}); re-run fer-convert") from error
    validate_contract(contract, path)
    return contract


def validate_contract(contract: ModelContract, where: str | Path) -> None:
    """Refuse models that do not fit this runtime."""
    if contract.format != CONTRACT_FORMAT:
        raise ModelError(f"{where}: metadata format {contract.format!r}, this runtime reads {CONTRACT_FORMAT!r}")
    expected_input = (1, INPUT_SIZE, INPUT_SIZE, 1)
    if tuple(contract.input.shape) != expected_input:
        raise ModelError(f"{where}: model input shape {list(contract.input.shape)}, expected {list(expected_input)} "
                         "(48x48 grayscale, batch 1)")
    if len(contract.labels) != len(LABELS) or tuple(contract.output.shape) != (1, len(contract.labels)):
        raise ModelError(f"{where}: model has {len(contract.labels)} labels and output shape "
                         f"{list(contract.output.shape)}; expected {len(LABELS)} classes ({', '.join(LABELS)})")
    if contract.preprocessing != PREPROCESSING_VERSION:
        raise ModelError(f"{where}: model was verified with preprocessing {contract.preprocessing!r}, this runtime "
                         f"uses {PREPROCESSING_VERSION!r}; reconvert the model with this version")
    for name, spec in (("input", contract.input), ("output", contract.output)):
        if spec.dtype not in ("uint8", "int8", "float32"):
            raise ModelError(f"{where}: unsupported {name} dtype {spec.dtype!r}; expected uint8, int8 or float32")


def budget_state(contract: ModelContract) -> str:
    """fer-convert's verdict on the model: ``passed``, ``failed``, ``unverified`` or ``unknown``.

    ``unverified``: converted without verification; ``unknown``: verified by a
    fer-convert that did not yet record the budget in the sidecar.
    """
    if not contract.verified:
        return "unverified"
    budget = contract.verified.get("budget")
    if not budget:
        return "unknown"
    return "passed" if budget.get("passed") else "failed"


def verification_summary(contract: ModelContract, name: str) -> tuple[int, str]:
    """A log level and one line saying how model ``name`` was verified by fer-convert, for the runtime's start-up.

    WARNING when the model was never verified or failed its accuracy budget
    (``fer-convert`` still writes such a model, with the failing report beside it).
    """
    verified, state = contract.verified, budget_state(contract)
    if state == "unverified":
        return logging.WARNING, (f"model {name}: no verified accuracy in its metadata (converted with --no-verify?); "
                                 "its accuracy on held-out faces is unmeasured")
    line = (f"model {name} ({contract.quantization}): verified on {verified.get('split', '?')} "
            f"({verified.get('images', '?')} images): accuracy {verified.get('accuracy', float('nan')):.1%}")
    if "top1_agreement_vs_keras" in verified:
        line += f", top-1 agreement with its Keras model {verified['top1_agreement_vs_keras']:.1%}"
    reference = verified.get("float_reference")
    if reference:  # a quantization-aware model's int8 file, also compared with the float model it came from
        line += (f" ({reference.get('top1_agreement', float('nan')):.1%} with the float model "
                 f"{reference.get('file', '?')}, accuracy {reference.get('accuracy', float('nan')):.1%})")
    if state == "failed":
        return logging.WARNING, f"{line}; it FAILED its conversion budget: {'; '.join(verified['budget'].get('failures', []))}"
    return logging.INFO, line
