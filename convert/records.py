"""The conversion report as typed records: built by :mod:`convert.pipeline`, rendered by :mod:`convert.report`.

Every record is a frozen :class:`~edge_runtime.core.records.JsonRecord`, so the
JSON report reads back (``ConversionReport.from_json``) into the same value and
refuses a document with unknown or missing fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edge_runtime.core.contract import Budget, ModelContract
from edge_runtime.core.records import JsonRecord

# Model kinds in a report, in table order: the Keras model and the TFLite files written from it.
KINDS = ("keras", "float32", "float16", "dynamic", "int8")


@dataclass(frozen=True)
class Comparison(JsonRecord):
    """A candidate model's predictions against a reference model's, on the same held-out images."""

    accuracy_drop_pp: float  # reference minus candidate accuracy, percentage points
    macro_f1_drop_pp: float
    top1_agreement: float
    top1_agreement_decisive: float  # on the reference's decisive predictions (top-2 margin above 0.05)
    near_tie_share: float  # the share of the reference's predictions that are near-ties
    mean_abs_probability_difference: float
    per_class_f1_change: dict[str, float]  # candidate minus reference


@dataclass(frozen=True)
class ModelResult(JsonRecord):
    """One model's scores on the held-out split."""

    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    confusion_matrix: tuple[tuple[int, ...], ...]  # rows: true label, columns: predicted, label order


@dataclass(frozen=True)
class ReferenceComparison(JsonRecord):
    """Every model against another Keras model (a quantization-aware model's float parent): reported, not judged."""

    file: str
    sha256: str
    accuracy: float
    macro_f1: float
    comparisons: dict[str, Comparison]


@dataclass(frozen=True)
class HeldOutVerification(JsonRecord):
    """Each model scored through the runtime's own classifier, and compared with the Keras model."""

    split: str
    images: int
    results: dict[str, ModelResult]
    comparisons: dict[str, Comparison]  # each TFLite file against the Keras model it came from
    reference: ReferenceComparison | None = None


@dataclass(frozen=True)
class BudgetVerdict(Budget):
    """The budget's verdict (:class:`Budget`, what the judged model's sidecar records) and which model it judged."""

    candidate: str = ""

    def judged(self) -> Budget:
        """The verdict as the judged model's sidecar records it."""
        return Budget(**{item.name: getattr(self, item.name) for item in dataclasses.fields(Budget)})


@dataclass(frozen=True)
class Latency(JsonRecord):
    """Single-thread invoke time per face."""

    median_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True)
class ModelFile(JsonRecord):
    """A written TFLite file: size, ops, I/O types and speed."""

    file: str
    size_bytes: int
    ops: dict[str, int]
    io: dict[str, str]
    float_ops: int
    size_ratio_to_float32: float | None = None
    latency_1_thread: Latency | None = None


@dataclass(frozen=True)
class CalibrationSummary(JsonRecord):
    """The representative images the int8 ranges came from."""

    directory: str
    images: int
    histogram: dict[str, int]
    warnings: tuple[str, ...]
    source: str
    method: str = "min/max of every tensor over the calibration images (the TFLite converter's own)"


@dataclass(frozen=True)
class DebugRow(JsonRecord):
    """One tensor's int8 error from TensorFlow's QuantizationDebugger."""

    tensor: str
    layer: str
    rmse: float
    scale: float
    rmse_over_scale: float
    mean_error: float
    max_abs_error: float


@dataclass(frozen=True)
class EdgeTpuIssue(JsonRecord):
    """Why one op cannot run on the Edge TPU."""

    op_index: int
    op: str
    tensor: str
    reason: str


@dataclass(frozen=True)
class EdgeTpuCheck(JsonRecord):
    """The static Edge TPU check: unsupported ops, non-8-bit tensors, dynamic shapes, and how much would map."""

    compatible: bool
    ops_total: int
    ops_before_first_unsupported: int
    first_unsupported_op_index: int | None
    issues: tuple[EdgeTpuIssue, ...]
    unsupported_op_types: tuple[str, ...]


@dataclass(frozen=True)
class CompilerOutcome(JsonRecord):
    """What edgetpu_compiler did: the file it wrote, or why it did not run (``message``) or failed (``stderr``)."""

    compiled: bool
    message: str = ""
    output: str = ""
    summary: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class EdgeTpuSummary(JsonRecord):
    """The static Edge TPU check and what edgetpu_compiler said (or why it did not run)."""

    static_check: EdgeTpuCheck
    compiler: CompilerOutcome


@dataclass(frozen=True)
class SourceModel(JsonRecord):
    """The Keras model that was converted."""

    file: str
    sha256: str
    parameters: int


@dataclass(frozen=True)
class ConversionReport(JsonRecord):
    """Everything one ``fer-convert`` run did and measured."""

    source_model: SourceModel
    quantization: str
    io_type: str
    edge_graph: bool
    quantization_aware: bool
    outputs: dict[str, str]  # kind -> written .tflite path
    contracts: dict[str, ModelContract]  # kind -> the sidecar written beside it
    models: dict[str, ModelFile]
    provenance: dict[str, Any]
    calibration: CalibrationSummary | None = None
    verification: HeldOutVerification | None = None
    budget: BudgetVerdict | None = None
    quantization_debugger: tuple[DebugRow, ...] = ()
    edgetpu: EdgeTpuSummary | None = None
    report_files: dict[str, str] | None = None
