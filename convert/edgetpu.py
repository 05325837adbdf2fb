"""Coral Edge TPU compatibility: a static check of an int8 model, and ``edgetpu_compiler`` when it is installed.

The Edge TPU runs 8-bit ops with static shapes from a fixed list; the compiler
maps the graph up to the first op it cannot run and leaves everything after it
to the CPU. The check names each offending op and where it sits, so the user
knows what share of the graph would be accelerated before owning the hardware.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from convert.inspect_tflite import OpInfo, list_ops
from convert.records import CompilerOutcome, EdgeTpuCheck, EdgeTpuIssue

log = logging.getLogger(__name__)

# Ops the Edge TPU compiler (v16) can map, from coral.ai/docs/edgetpu/models-intro ("Supported operations").
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL",
    "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
    "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
# int32 is allowed where the Edge TPU itself uses it: conv/FC biases and shape/axis operands.
INT32_OPERANDS_OK = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "RESHAPE",
                               "SPLIT", "PAD", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "STRIDED_SLICE", "SLICE",
                               "TRANSPOSE", "EXPAND_DIMS", "GATHER", "CONCATENATION", "PACK", "SQUEEZE"})
COMPILER_HINT = ("edgetpu_compiler is not installed; it exists for x86-64 Debian/Ubuntu only "
                 "(apt install edgetpu-compiler from Coral's package repository, "
                 "https://coral.ai/docs/edgetpu/compiler/). "
                 "Without it the runtime still runs this model on the CPU.")


def compatibility(model_path: str | Path) -> EdgeTpuCheck:
    """Static Edge TPU check: unsupported ops, non-8-bit tensors, dynamic shapes; and how much would map."""
    ops = list_ops(model_path)
    issues: list[EdgeTpuIssue] = []
    for op in ops:
        issues.extend(_op_issues(op))
    first_bad = min((issue.op_index for issue in issues), default=None)
    mapped = len(ops) if first_bad is None else sum(1 for op in ops if op.index < first_bad)
    return EdgeTpuCheck(compatible=not issues, ops_total=len(ops), ops_before_first_unsupported=mapped,
                        first_unsupported_op_index=first_bad, issues=tuple(issues),
                        unsupported_op_types=tuple(sorted({issue.op for issue in issues})))


def _op_issues(op: OpInfo) -> list[EdgeTpuIssue]:
    found = []
    if op.name not in EDGETPU_OPS:
        first_output = op.outputs[0][0] if op.outputs else ""
        found.append(EdgeTpuIssue(op.index, op.name, first_output, "op not supported by the Edge TPU"))
    for name, dtype, shape in op.inputs + op.outputs:
        if dtype in ("int8", "uint8"):
            pass
        elif dtype == "int32" and op.name in INT32_OPERANDS_OK and (name, dtype, shape) in op.inputs:
            pass
        else:
            found.append(EdgeTpuIssue(op.index, op.name, name, f"{dtype} tensor (the Edge TPU needs 8-bit tensors)"))
        if any(d < 0 for d in shape):
            found.append(EdgeTpuIssue(op.index, op.name, name,
                                      f"dynamic shape {list(shape)} (the Edge TPU needs static shapes)"))
    return found


def compile_for_edgetpu(model_path: str | Path, out_dir: str | Path) -> CompilerOutcome:
    """Run ``edgetpu_compiler`` if it is on PATH; return its summary or how to get it."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        log.warning(COMPILER_HINT)
        return CompilerOutcome(compiled=False, message=COMPILER_HINT)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([compiler, "-s", "-o", str(out_dir), str(model_path)], capture_output=True, text=True,
                            timeout=600)
    compiled = out_dir / (Path(model_path).stem + "_edgetpu.tflite")
    return CompilerOutcome(compiled=result.returncode == 0 and compiled.exists(), output=str(compiled),
                           summary=result.stdout[-6000:], stderr=result.stderr[-2000:])
