"""On-device facial expression recognition runtime (no TensorFlow).

``from edge_runtime import EmotionRecognizer`` is the Python API (:mod:`edge_runtime.api`).
:mod:`edge_runtime.core` holds the pieces every stage of the toolkit shares (label order, errors, preprocessing,
model contract, CLI support); the rest of this package is the runtime itself.
"""

from edge_runtime.core.version import __version__

__all__ = ["EmotionRecognizer", "__version__"]


def __getattr__(name: str):
    # Loaded on first use: training imports edge_runtime.core and must not pull in the detectors and the model.
    if name == "EmotionRecognizer":
        from edge_runtime.api import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
