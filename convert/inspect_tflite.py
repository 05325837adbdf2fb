"""Reading a TFLite model's graph (ops, tensor types, static shapes) without TensorFlow.

Uses the interpreter *without* its default XNNPACK delegate, so the op list is
the model's own, not the CPU delegate's rewritten plan.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np


class OpInfo(NamedTuple):
    """One operator: execution index, builtin name, and its input/output tensors.

    Each tensor is ``(name, dtype, shape_signature)``.
    """

    index: int
    name: str
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]


def _plain_interpreter(model: str | Path | bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interpreter = Interpreter(**source, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def list_ops(model_path: str | Path | bytes) -> list[OpInfo]:
    """Every operator of the model's main graph (a file or its content), in execution order."""
    interpreter = _plain_interpreter(model_path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def describe(indices) -> tuple:
        described = []
        for i in indices:
            if i < 0:  # optional input left out
                continue
            tensor = tensors[i]
            signature = tuple(int(d) for d in tensor.get("shape_signature", tensor["shape"]))
            described.append((tensor["name"], np.dtype(tensor["dtype"]).name, signature))
        return tuple(described)

    return [OpInfo(op["index"], op["op_name"], describe(op["inputs"]), describe(op["outputs"]))
            for op in interpreter._get_ops_details()]  # no public API lists ops; this one is stable across LiteRT


def op_histogram(model_path: str | Path) -> dict[str, int]:
    """Op name -> count, sorted by name."""
    return dict(sorted(Counter(op.name for op in list_ops(model_path)).items()))


def io_types(model_path: str | Path) -> dict[str, str]:
    """The dtypes of the model's input and output tensors."""
    interpreter = _plain_interpreter(model_path)
    return {"input": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
            "output": np.dtype(interpreter.get_output_details()[0]["dtype"]).name}


def float_ops(model_path: str | Path | bytes) -> list[OpInfo]:
    """Ops computing in floating point (any float input or output tensor)."""
    return [op for op in list_ops(model_path)
            if any(dtype.startswith("float") for _, dtype, _ in op.inputs + op.outputs)]
