"""The model contract: what a ``.tflite`` file expects and promises, stored in a JSON sidecar.

The converter writes ``<model>.json`` next to ``<model>.tflite``; the runtime
reads it and refuses a model that does not fit (wrong input size, class count,
preprocessing version, or no sidecar at all) before the first frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.core.errors import ModelError
from edge_runtime.core.labels import LABELS
from edge_runtime.core.preprocessing import INPUT_SIZE, PREPROCESSING_VERSION
from edge_runtime.core.records import JsonRecord, RecordError

# /3: the sha256 of the .tflite file itself (/2: typed verification, the budget only on the model it judged, Edge TPU
# fields).
CONTRACT_FORMAT = "fer-edge-model/3"


@dataclass(frozen=True)
class TensorSpec(JsonRecord):
    """Shape, dtype and affine quantization (``real = scale * (q - zero_point)``; scale 0 = not quantized)."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class Budget(JsonRecord):
    """What a quantized model was judged against by fer-convert, and the verdict."""

    max_drop_pp: float
    min_agreement: float
    passed: bool
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class FloatReference(JsonRecord):
    """How the model compares with the float model a quantization-aware model was fine-tuned from."""

    file: str
    accuracy: float
    top1_agreement: float


@dataclass(frozen=True)
class Verification(JsonRecord):
    """What fer-convert measured for the model on held-out faces, through the runtime's own classifier."""

    split: str
    images: int
    accuracy: float
    macro_f1: float
    accuracy_drop_pp_vs_keras: float
    top1_agreement_vs_keras: float
    budget: Budget | None = None  # only on the quantized model the budget judged
    float_reference: FloatReference | None = None


@dataclass(frozen=True)
class ModelContract(JsonRecord):
    """Everything the runtime needs to know about a converted model: the sidecar's content."""

    labels: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    preprocessing: str
    quantization: str
    source_model: str = ""
    source_sha256: str = ""
    verified: Verification | None = None  # None: converted with --no-verify
    # The .tflite file's own sha256, written by :func:`write_contract`: the weights the verification above belongs to.
    model_sha256: str = ""
    format: str = CONTRACT_FORMAT
    # Written by edgetpu_compiler (fer-convert --edgetpu): the Edge TPU runs it; the CPU runs ``cpu_model`` instead,
    # the int8 file it was compiled from (same graph, same verification), which sits next to it.
    edgetpu_compiled: bool = False
    cpu_model: str = ""


def sidecar_path(model_path: str | Path) -> Path:
    """``models/x.tflite`` -> ``models/x.json``."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (a model may be large; memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_contract(model_path: str | Path, contract: ModelContract) -> ModelContract:
    """Write the sidecar next to ``model_path``, binding it to the file's sha256 as it is now; returns what was
    written."""
    bound = dataclasses.replace(contract, model_sha256=file_sha256(model_path))
    sidecar_path(model_path).write_text(json.dumps(bound.to_json(), indent=2) + "\n")
    return bound


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
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: unreadable model metadata ({error}); re-run fer-convert") from error
    if not isinstance(raw, dict) or raw.get("format") != CONTRACT_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise ModelError(f"{path}: metadata format {found!r}, this runtime reads {CONTRACT_FORMAT!r}; re-run "
                         "fer-convert with this version")
    try:
        contract = ModelContract.from_json(raw, str(path))
    except RecordError as error:
        raise ModelError(f"{error}; re-run fer-convert to write metadata this runtime reads") from error
    validate_contract(contract, path)
    actual = file_sha256(model_path)
    if actual != contract.model_sha256:
        raise ModelError(f"{model_path} does not match its sidecar {path.name} (file sha256 {actual[:12]}..., sidecar "
                         f"says {contract.model_sha256[:12] or 'nothing'}...): the model was changed or replaced after "
                         "fer-convert verified it; restore the file or re-run fer-convert")
    return contract


def validate_contract(contract: ModelContract, where: str | Path) -> None:
    """Refuse models that do not fit this runtime."""
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
    if contract.cpu_model and (Path(contract.cpu_model).name != contract.cpu_model or contract.cpu_model in (".", "..")
                               or not contract.cpu_model.endswith(".tflite")):
        raise ModelError(f"{where}: cpu_model {contract.cpu_model[:80]!r} must name a .tflite file next to the model "
                         "(a file name, no folders); re-run fer-convert --edgetpu")


def budget_state(contract: ModelContract) -> str:
    """fer-convert's verdict on the model: ``passed``, ``failed``, ``unverified`` or ``unjudged``.

    ``unverified``: converted without verification; ``unjudged``: verified, but
    not the quantized model a budget judged (the float32 reference file).
    """
    if contract.verified is None:
        return "unverified"
    budget = contract.verified.budget
    if budget is None:
        return "unjudged"
    return "passed" if budget.passed else "failed"


def verification_summary(contract: ModelContract, name: str) -> tuple[int, str]:
    """A log level and one line saying how model ``name`` was verified by fer-convert, for the runtime's start-up.

    WARNING when the model was never verified or failed its accuracy budget
    (``fer-convert`` still writes such a model, with the failing report beside it).
    """
    verified, state = contract.verified, budget_state(contract)
    if verified is None:
        return logging.WARNING, (f"model {name}: no verified accuracy in its metadata (converted with --no-verify?); "
                                 "its accuracy on held-out faces is unmeasured")
    line = (f"model {name} ({contract.quantization}): verified on {verified.split} ({verified.images} images), "
            f"without test-time augmentation: accuracy {verified.accuracy:.1%}, top-1 agreement with its Keras model "
            f"{verified.top1_agreement_vs_keras:.1%}")
    reference = verified.float_reference
    if reference is not None:  # a quantization-aware model's int8 file, also compared with the float model it came from
        line += (f" ({reference.top1_agreement:.1%} with the float model {reference.file}, accuracy "
                 f"{reference.accuracy:.1%})")
    if state == "failed":
        return logging.WARNING, f"{line}; it FAILED its conversion budget: {'; '.join(verified.budget.failures)}"
    return logging.INFO, line
