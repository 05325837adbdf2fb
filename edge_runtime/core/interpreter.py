"""Choosing a TFLite interpreter and a backend (CPU with XNNPACK, or a Coral Edge TPU).

Interpreter packages in order of preference: ``ai_edge_litert`` (LiteRT, the
maintained one), then ``tflite_runtime`` (stopped at 2.14, Python <= 3.11).
The runtime never imports TensorFlow (an import-linter contract says so).
"""

from __future__ import annotations

import ctypes.util
import logging
import platform
from pathlib import Path
from typing import Any, Callable, NamedTuple

from edge_runtime.core.errors import FerError, ModelError

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(
    platform.system(), "libedgetpu.so.1")
BACKENDS = ("cpu", "edgetpu")


class InterpreterApi(NamedTuple):
    """An interpreter class and its delegate loader, with the package they came from."""

    interpreter_class: Any
    load_delegate: Callable[..., Any]
    package: str


class EdgeTpuError(FerError):
    """The Edge TPU could not be used (no device, no library, or a model not compiled for it)."""


def interpreter_api() -> InterpreterApi:
    """The best available TFLite interpreter package."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return InterpreterApi(Interpreter, load_delegate, "ai_edge_litert")
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return InterpreterApi(Interpreter, load_delegate, "tflite_runtime")
    except ImportError:
        pass
    raise FerError("no TFLite interpreter found; install one with `pip install ai-edge-litert` "
                   "(or tflite-runtime on Python <= 3.11)")


EDGETPU_MARKER = b"edgetpu-custom-op"


def is_edgetpu_compiled(model_path: str | Path, chunk_bytes: int = 1 << 20) -> bool:
    """Whether ``edgetpu_compiler`` produced this model (it embeds an ``edgetpu-custom-op``).

    The file is streamed in chunks (overlapping by the marker's length), so a large file is never held in memory.
    """
    overlap = len(EDGETPU_MARKER) - 1
    tail = b""
    with open(model_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            if EDGETPU_MARKER in tail + chunk:
                return True
            tail = chunk[-overlap:]
    return False


def make_interpreter(model_path: str | Path, *, threads: int = 1, backend: str = "cpu",
                     fallback_to_cpu: bool = True, api: InterpreterApi | None = None):
    """Create and allocate an interpreter for ``model_path`` on ``backend``.

    ``edgetpu`` loads the ``libedgetpu`` delegate. A model not compiled for the
    Edge TPU and a missing Edge TPU are different failures with different
    fixes; with ``fallback_to_cpu`` either one logs a warning and continues on
    the CPU instead of stopping.
    """
    model_path = Path(model_path)
    if backend not in BACKENDS:
        raise FerError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} does not exist; pass --model with a .tflite written by fer-convert")
    api = api or interpreter_api()
    delegates = []
    if backend == "edgetpu":
        try:
            delegates = [_edgetpu_delegate(model_path, api)]
        except EdgeTpuError as error:
            if not fallback_to_cpu:
                raise
            log.warning("%s; falling back to the CPU", error)
    try:
        interpreter = api.interpreter_class(model_path=str(model_path), experimental_delegates=delegates or None,
                                            num_threads=max(1, threads))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ModelError(f"{model_path} is not a loadable TFLite model: {str(error).splitlines()[0]}") from error
    log.info("loaded %s with %s on %s (%d thread%s)", model_path.name, api.package,
             "edgetpu" if delegates else "cpu", threads, "" if threads == 1 else "s")
    return interpreter


def _edgetpu_delegate(model_path: Path, api: InterpreterApi):
    if not is_edgetpu_compiled(model_path):
        raise EdgeTpuError(f"model not compiled for the Edge TPU: {model_path.name} has no edgetpu-custom-op; "
                           "compile it with `edgetpu_compiler` "
                           "(fer-convert --edgetpu does when the compiler is installed)")
    if ctypes.util.find_library("edgetpu") is None and not Path(f"/usr/lib/{EDGETPU_LIBRARY}").exists():
        # Checked before load_delegate, which on a missing library also prints a spurious traceback when collected.
        raise EdgeTpuError(f"no Edge TPU runtime: {EDGETPU_LIBRARY} not found; install libedgetpu1-std from "
                           "Coral's apt repository")
    try:
        return api.load_delegate(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError) as error:
        raise EdgeTpuError(f"no Edge TPU found ({str(error).splitlines()[0] if str(error) else 'delegate failed'}); "
                           "check the USB/PCIe connection and that your user is in the plugdev/apex group") from error
