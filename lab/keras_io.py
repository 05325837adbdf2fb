"""Keras model files and their input: loading with an error a user can act on, and batch prediction on raw
48x48 pixels (what every project model takes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.core.errors import ModelError


def load_keras_model(path: str | Path):
    """Load a ``.keras`` model with a clear error for a missing or unreadable file."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; train one with `fer-train fit` or pass the right path")
    if path.suffix != ".keras":
        raise ModelError(f"{path} is not a .keras model file; pass the .keras file written by `fer-train fit`")
    import lab.flip_pairs as _flip_loss  # noqa: F401  (registers the flip-aware loss a checkpoint may be compiled with)
    import lab.quantization as _qat_layers  # noqa: F401  (registers the quantization-aware layers for loading)

    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for corrupt archives
        raise ModelError(f"cannot load Keras model {path}: {error.__class__.__name__}: {error}") from error


def model_of_run(path: str | Path, what: str = "model") -> Path:
    """A model named on the command line (``what`` names its role in the error): a run folder of ``fer-train fit``
    means its ``best.keras``."""
    path = Path(path)
    chosen = path / "best.keras" if path.is_dir() else path
    if not chosen.is_file() or chosen.suffix != ".keras":
        raise ModelError(f"{what} {path}: no .keras model there; give a run folder of `fer-train fit` (with "
                         "best.keras) or a .keras file")
    return chosen


def to_model_input(images: np.ndarray) -> np.ndarray:
    """``(N, 48, 48)`` uint8 -> ``(N, 48, 48, 1)`` float32 raw pixels, the Keras model's input."""
    return images[..., None].astype(np.float32)


def predict_probabilities(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for ``(N, 48, 48)`` uint8 images (raw pixels, as every project model expects)."""
    return np.asarray(model.predict(to_model_input(images), batch_size=batch_size, verbose=0))
