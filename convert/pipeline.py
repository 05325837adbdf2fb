"""``fer-convert``'s job: convert, verify on held-out data, report, and refuse a model over budget.

Each step is checked, in the spirit of a careful exporter: the rebuilt graph
must match the Keras model, every written file is reloaded by the runtime's
own interpreter and scored, and the quantized model must stay within the
accuracy-drop and agreement budgets or the command fails (after writing the
report, so the user can see why).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from convert.quantize import check_modes
from convert.records import (
    BudgetVerdict,
    CalibrationSummary,
    ConversionReport,
    EdgeTpuSummary,
    HeldOutVerification,
    Latency,
    ModelFile,
    ModelResult,
    ReferenceComparison,
    SourceModel,
)
from edge_runtime.core.contract import FloatReference, ModelContract, TensorSpec, Verification, write_contract
from edge_runtime.core.errors import FerError
from edge_runtime.core.labels import LABELS
from edge_runtime.core.preprocessing import INPUT_SIZE, PREPROCESSING_VERSION
from lab.explicit_lstm import DEFAULT_CELL_STATE_RANGE

log = logging.getLogger(__name__)

SUFFIX = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


class BudgetExceeded(FerError):
    """The quantized model lost more accuracy or agreement than allowed; the report was written."""


@dataclass(frozen=True)
class ConvertOptions:
    """What ``fer-convert`` was asked to do."""

    quantize: str = "int8"
    io_type: str = "uint8"
    # The project's int8 targets: at most 0.5 pp of accuracy lost, at least 98% of top-1 predictions kept.
    max_drop_pp: float = 0.5
    min_agreement: float = 0.98
    split: str = "PrivateTest"
    out_dir: Path = Path("models")
    report_dir: Path = Path("reports/conversion")
    calibration_dir: Path = Path("calibration_data")
    calibration_per_class: int = 100
    edgetpu: bool = False
    verify: bool = True
    debug_layers: bool = True
    edge_graph: bool = True
    limit: int | None = None
    reference_model: Path | None = None  # also compare with this Keras model (default for QAT: its float parent)
    name: str | None = None  # output file stem; default: the model file's stem
    # int8 of a model with LSTMs: their cell states get at most +-this range (0: plain min/max like every tensor).
    cell_range: float = DEFAULT_CELL_STATE_RANGE

    def __post_init__(self):
        # Checked before any model is loaded or converted: a wrong combination fails in well under a second.
        check_modes(self.quantize, self.io_type)
        if self.edgetpu and self.quantize != "int8":
            raise FerError(f"--edgetpu needs --quantize int8 (got {self.quantize}): the Edge TPU runs only "
                           "full-integer 8-bit models")
        if self.cell_range < 0:
            raise FerError(f"--cell-range {self.cell_range:g} is negative; give the cell state's int8 bound (default "
                           f"{DEFAULT_CELL_STATE_RANGE:g}), or 0 for plain min/max calibration")


def _tensor_spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    shape = tuple(int(d) for d in detail["shape"])
    return TensorSpec(shape, np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


def write_tflite(content: bytes, path: Path, mode: str, source: Path, source_sha256: str) -> ModelContract:
    """Write a model and its sidecar; the sidecar's tensor specs are read back from the written file."""
    from ai_edge_litert.interpreter import Interpreter

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    contract = ModelContract(labels=LABELS, input=_tensor_spec(interpreter.get_input_details()[0]),
                             output=_tensor_spec(interpreter.get_output_details()[0]),
                             preprocessing=PREPROCESSING_VERSION, quantization=mode, source_model=source.name,
                             source_sha256=source_sha256)
    return write_contract(path, contract)


@dataclass(frozen=True)
class SourceKerasModel:
    """The Keras model being converted, checked, with what the report and sidecars say about it."""

    path: Path
    model: Any
    sha256: str
    quantization_aware: bool


@dataclass(frozen=True)
class Graphs:
    """What the converter is given: the model's graph, and for int8 with LSTMs the calibrated copy with capped cell
    ranges (``None`` otherwise)."""

    graph: Any
    capped: Any = None


def run_conversion(model_path: str | Path, options: ConvertOptions, data: str | None) -> ConversionReport:
    """Convert ``model_path`` as ``options`` say; returns the report. Raises :class:`BudgetExceeded`."""
    from lab.provenance import provenance

    started = provenance()  # the code as it was when the conversion began (the tree may change while it runs)
    source = load_source(model_path, options)
    dataset = load_dataset(data, options)
    calibration = calibrate(source, dataset, options)
    graphs = build_graphs(source, calibration, options)
    outputs, contracts = write_models(source, graphs, calibration, options)
    models = _describe_models(outputs)
    verification = budget = None
    if options.verify and dataset is not None:
        reference_path = options.reference_model or (float_parent(source.path) if source.quantization_aware else None)
        verification, budget, latencies = _verify(source.model, dataset, outputs, options, reference_path)
        models = {kind: replace(model, latency_1_thread=latencies[kind]) for kind, model in models.items()}
    debugger = debug_layers(graphs, calibration, dataset, options)
    edgetpu = compile_edgetpu(outputs, options)
    contracts = _update_sidecars(contracts, outputs, verification, budget)
    if edgetpu is not None and edgetpu.compiler.compiled:
        contracts["edgetpu"] = _edgetpu_contract(edgetpu, contracts["int8"], outputs["int8"])
    report = ConversionReport(
        source_model=SourceModel(str(source.path), source.sha256, int(source.model.count_params())),
        quantization=options.quantize, io_type=options.io_type, edge_graph=options.edge_graph,
        quantization_aware=source.quantization_aware, outputs={kind: str(path) for kind, path in outputs.items()},
        contracts=contracts, models=models, provenance=started,
        calibration=_calibration_summary(calibration, graphs, options), verification=verification, budget=budget,
        quantization_debugger=debugger, edgetpu=edgetpu)
    from convert.report import write_reports

    report = write_reports(report, options.report_dir, f"{_stem(source, options)}_{SUFFIX[options.quantize]}")
    if budget is not None and not budget.passed:
        raise BudgetExceeded("; ".join(budget.failures) + f" (report: {report.report_files['markdown']})")
    return report


def load_source(model_path: str | Path, options: ConvertOptions) -> SourceKerasModel:
    """The Keras model, refused unless it maps a 48x48x1 face to the 7 classes (and a quantization-aware model
    asked for float16 or dynamic quantization)."""
    from lab.keras_io import load_keras_model
    from lab.provenance import file_sha256
    from lab.quantization import is_quantization_aware

    model_path = Path(model_path)
    keras_model = load_keras_model(model_path)
    if tuple(keras_model.input_shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 1) or keras_model.output_shape[-1] != len(LABELS):
        raise FerError(f"{model_path}: input {keras_model.input_shape}, output {keras_model.output_shape}; "
                       f"fer-convert needs a {INPUT_SIZE}x{INPUT_SIZE}x1 -> {len(LABELS)} classes model")
    quantization_aware = is_quantization_aware(keras_model)
    if quantization_aware and options.quantize in ("float16", "dynamic"):
        raise FerError(f"{model_path.name} is quantization-aware: it converts to int8 (or none, its float reference), "
                       f"not {options.quantize}; convert the float model it was fine-tuned from instead")
    return SourceKerasModel(model_path, keras_model, file_sha256(model_path), quantization_aware)


def load_dataset(data: str | None, options: ConvertOptions):
    """FER2013 from ``--data`` (else ``$FER2013_DIR``), or ``None`` without it where verification is off."""
    from lab.data import DATA_ENV_VAR, load_fer2013

    if data is not None or os.environ.get(DATA_ENV_VAR):
        return load_fer2013(data)
    if options.verify:
        raise FerError(f"verification needs the FER2013 data: pass --data (or set {DATA_ENV_VAR}), "
                       "or --no-verify to convert without measuring the accuracy drop")
    return None


def calibrate(source: SourceKerasModel, dataset, options: ConvertOptions):
    """The representative set for int8 (built from Training, or read from ``calibration_dir`` without the data);
    ``None`` for other modes and for a quantization-aware model, which carries its ranges."""
    from lab.calibration import build_calibration, load_calibration

    if options.quantize != "int8" or source.quantization_aware:
        return None
    if dataset is not None:
        calibration = build_calibration(dataset, options.calibration_dir, per_class=options.calibration_per_class)
    else:
        calibration = load_calibration(options.calibration_dir)
    log.info("calibration set: %d Training images %s", len(calibration.labels), calibration.histogram())
    return calibration


def build_graphs(source: SourceKerasModel, calibration, options: ConvertOptions) -> Graphs:
    """The graph to convert: explicit LSTM gates (``edge_graph``) or Keras' own at batch 1, and for int8 with LSTMs
    the calibrated int8-simulating copy whose cell-state ranges are capped."""
    from convert.edge_graph import batch_one_model, edge_friendly_model

    # A quantization-aware model already has explicit LSTM gates (lab.quantization builds them).
    rebuild = options.edge_graph and not source.quantization_aware
    graph = edge_friendly_model(source.model) if rebuild else batch_one_model(source.model)
    # The converter has no per-tensor range override; the copy's FakeQuants are one. --no-edge-graph asks for Keras'
    # own graph, converted as is: no cap there.
    if not (options.quantize == "int8" and rebuild and options.cell_range > 0 and calibration is not None
            and _has_lstm(source.model)):
        return Graphs(graph)
    from lab.quantization import quantization_aware_model

    capped = quantization_aware_model(source.model, calibration.images, cell_range=options.cell_range)
    return Graphs(graph, batch_one_model(capped))


def write_models(source: SourceKerasModel, graphs: Graphs, calibration,
                 options: ConvertOptions) -> tuple[dict[str, Path], dict[str, ModelContract]]:
    """Convert and write the float32 model and the quantized one, each with its sidecar; their paths and
    contracts by kind."""
    from convert.quantize import convert

    stem = _stem(source, options)
    outputs = {"float32": options.out_dir / f"{stem}_float32.tflite"}
    if options.quantize != "none":
        outputs[SUFFIX[options.quantize]] = options.out_dir / f"{stem}_{SUFFIX[options.quantize]}.tflite"
    contracts = {}
    for kind, path in outputs.items():
        mode = "none" if kind == "float32" else options.quantize
        log.info("converting %s -> %s", source.path.name, path)
        if kind == "int8" and graphs.capped is not None:
            content = convert(graphs.capped, mode, io_type=options.io_type, quantization_aware=True)
        else:
            content = convert(graphs.graph, mode, io_type=options.io_type, quantization_aware=source.quantization_aware,
                              calibration=calibration.images if calibration is not None else None)
        contracts[kind] = write_tflite(content, path, mode, source.path, source.sha256)
    return outputs, contracts


def debug_layers(graphs: Graphs, calibration, dataset, options: ConvertOptions) -> tuple:
    """The per-layer quantization error of an int8 conversion (``debug_layers``), or nothing."""
    if not (options.quantize == "int8" and options.debug_layers and calibration is not None):
        return ()
    if graphs.capped is not None:
        # The debugger re-quantizes with the converter's own ranges: it would describe another int8 model.
        log.info("per-layer quantization error: not measured (the int8 ranges are not the converter's own)")
        return ()
    from convert.verify import quantization_debug

    log.info("per-layer quantization error (QuantizationDebugger)")
    debug_images = dataset.split(options.split).images[:64] if dataset is not None else calibration.images[:64]
    return quantization_debug(graphs.graph, calibration.images, debug_images)


def compile_edgetpu(outputs: dict[str, Path], options: ConvertOptions) -> EdgeTpuSummary | None:
    """The Edge TPU check and compilation of the int8 model (``edgetpu``), or ``None``."""
    if not options.edgetpu:
        return None
    from convert.edgetpu import compatibility, compile_for_edgetpu

    target = outputs["int8"]
    return EdgeTpuSummary(static_check=compatibility(target), compiler=compile_for_edgetpu(target, options.out_dir))


def _edgetpu_contract(edgetpu: EdgeTpuSummary, int8_contract: ModelContract, int8_path: Path) -> ModelContract:
    """The compiled file computes the int8 graph it came from: it carries that model's contract and verification,
    and names it as the model to run where there is no Edge TPU."""
    compiled = Path(edgetpu.compiler.output)
    contract = write_contract(compiled, replace(int8_contract, edgetpu_compiled=True, cpu_model=int8_path.name))
    log.info("Edge TPU model %s (CPU fallback: %s)", compiled, int8_path.name)
    return contract


def _calibration_summary(calibration, graphs: Graphs, options: ConvertOptions) -> CalibrationSummary | None:
    if calibration is None:
        return None
    summary = CalibrationSummary(directory=str(options.calibration_dir), images=int(len(calibration.labels)),
                                 histogram=calibration.histogram(), warnings=calibration.warnings,
                                 source="Training split only")
    if graphs.capped is None:
        return summary
    return replace(summary, method=f"min/max of every tensor over the calibration images, except the LSTM cell "
                   f"states, capped at +-{options.cell_range:g} (--cell-range; lab.quantization's calibrated int8 "
                   "graph)")


def _stem(source: SourceKerasModel, options: ConvertOptions) -> str:
    return options.name or source.path.stem


def _has_lstm(model) -> bool:
    from keras import layers

    return any(isinstance(layer, layers.LSTM) for layer in model.layers)


def _describe_models(outputs: dict[str, Path]) -> dict[str, ModelFile]:
    from convert.inspect_tflite import float_ops, io_types, op_histogram

    float_size = outputs["float32"].stat().st_size
    return {kind: ModelFile(file=str(path), size_bytes=path.stat().st_size, ops=op_histogram(path), io=io_types(path),
                            float_ops=len(float_ops(path)),
                            size_ratio_to_float32=path.stat().st_size / float_size if kind != "float32" else None)
            for kind, path in outputs.items()}


def float_parent(model_path: Path) -> Path | None:
    """The float model a quantization-aware model was fine-tuned from, as its ``.metrics.json`` records it."""
    import json

    metrics = model_path.with_suffix(".metrics.json")
    if not metrics.is_file():
        return None
    parent = (json.loads(metrics.read_text()).get("quantization_aware_from") or {}).get("file")
    if parent and Path(parent).is_file():
        return Path(parent)
    log.warning("%s names float model %s, which is not there: no comparison with it", metrics, parent)
    return None


def _verify(keras_model, dataset, outputs: dict[str, Path], options: ConvertOptions,
            reference_path: Path | None) -> tuple[HeldOutVerification, BudgetVerdict, dict[str, Latency]]:
    """Score every model on the held-out split, compare with the Keras model, and judge the budget.

    With ``reference_path`` every model is also compared with that Keras model
    (for a quantization-aware model: the float model it came from); that
    comparison is reported, not judged.
    """
    from convert.verify import compare, latency_ms, tflite_probabilities
    from lab.data import stratified_subset
    from lab.keras_io import predict_probabilities

    split = dataset.split(options.split)
    if options.limit:
        split = stratified_subset(split, options.limit, 0)
    log.info("verifying on %s (%d images)", options.split, len(split))
    probabilities = {"keras": predict_probabilities(keras_model, split.images)}
    for kind, path in outputs.items():
        probabilities[kind] = tflite_probabilities(path, split.images, progress_label=f"{kind} on {options.split}")
    reference = None
    if reference_path is not None:
        reference = _compare_with_reference(reference_path, split, probabilities)
    verification = HeldOutVerification(
        split=options.split, images=int(len(split)),
        results={kind: _model_result(split.labels, probs) for kind, probs in probabilities.items()},
        comparisons={kind: compare(probabilities["keras"], probabilities[kind], split.labels) for kind in outputs},
        reference=reference)
    latencies = {kind: latency_ms(path, split.images) for kind, path in outputs.items()}
    return verification, _judge_budget(verification, outputs, options), latencies


def _model_result(labels, probabilities) -> ModelResult:
    """One model's scores on the held-out images."""
    from lab.metrics import classification_report

    full = classification_report(labels, probabilities.argmax(1))
    return ModelResult(accuracy=full["accuracy"], macro_f1=full["macro"]["f1"],
                       per_class_f1={k: v["f1"] for k, v in full["per_class"].items()},
                       confusion_matrix=tuple(tuple(row) for row in full["confusion_matrix"]))


def _compare_with_reference(reference_path: Path, split, probabilities: dict) -> ReferenceComparison:
    """Every model (the Keras one included) against the Keras model at ``reference_path``, on the same images."""
    from convert.verify import compare
    from lab.keras_io import load_keras_model, predict_probabilities
    from lab.provenance import file_sha256

    reference_probabilities = predict_probabilities(load_keras_model(reference_path), split.images)
    scores = _model_result(split.labels, reference_probabilities)
    return ReferenceComparison(
        file=str(reference_path), sha256=file_sha256(reference_path), accuracy=scores.accuracy,
        macro_f1=scores.macro_f1,
        comparisons={kind: compare(reference_probabilities, probs, split.labels)
                     for kind, probs in probabilities.items()})


def _judge_budget(verification: HeldOutVerification, outputs: dict[str, Path],
                  options: ConvertOptions) -> BudgetVerdict:
    """The conversion budget, judged on the most compressed output against the Keras model."""
    candidate = next(kind for kind in ("int8", "dynamic", "float16", "float32") if kind in outputs)
    comparison = verification.comparisons[candidate]
    failures = []
    if comparison.accuracy_drop_pp > options.max_drop_pp:
        failures.append(f"{candidate} accuracy drop {comparison.accuracy_drop_pp:.2f} pp exceeds --max-drop "
                        f"{options.max_drop_pp:g} pp")
    if comparison.top1_agreement < options.min_agreement:
        failures.append(f"{candidate} top-1 agreement {comparison.top1_agreement:.2%} is below "
                        f"--min-agreement {options.min_agreement:.0%}")
    log.info("%s vs the Keras model: accuracy drop %.2f pp, agreement %.2f%%", candidate, comparison.accuracy_drop_pp,
             100 * comparison.top1_agreement)
    return BudgetVerdict(candidate=candidate, max_drop_pp=float(options.max_drop_pp),
                         min_agreement=float(options.min_agreement), passed=not failures, failures=tuple(failures))


def _update_sidecars(contracts: dict[str, ModelContract], outputs: dict[str, Path],
                     verification: HeldOutVerification | None,
                     budget: BudgetVerdict | None) -> dict[str, ModelContract]:
    """Record the verified accuracy in each model's sidecar (and the budget in the judged model's)."""
    updated = {}
    for kind, contract in contracts.items():
        verified = None
        if verification is not None:
            result, comparison = verification.results[kind], verification.comparisons[kind]
            reference = verification.reference
            verified = Verification(
                split=verification.split, images=verification.images, accuracy=result.accuracy,
                macro_f1=result.macro_f1, accuracy_drop_pp_vs_keras=comparison.accuracy_drop_pp,
                top1_agreement_vs_keras=comparison.top1_agreement,
                # The runtime logs this at start-up, so a model that failed its check says so on the device too.
                budget=budget.judged() if budget is not None and budget.candidate == kind else None,
                # What the int8 model does against the float model a QAT model was fine-tuned from.
                float_reference=(FloatReference(Path(reference.file).name, reference.accuracy,
                                                reference.comparisons[kind].top1_agreement)
                                 if reference is not None else None))
        updated[kind] = write_contract(outputs[kind], replace(contract, verified=verified))
    return updated
