"""Temperature scaling: make a model exactly as sure as it is right, without changing a single prediction.

A model's softmax probabilities can be too flat (an ensemble's mean, or a student that learnt from one) or too
peaked. Dividing its logits by one temperature ``T`` fitted on PublicTest (the tuning split) makes them calibrated
(Guo et al., "On Calibration of Modern Neural Networks", 2017) and keeps every argmax, so accuracy and macro-F1 stay
as they are. The runtime's thresholds (``smoothing.threshold``, the dwell margin) read probabilities, and were set
for the shipped model, which is close to calibrated; a flatter model would drift to ``uncertain``.

The temperature is folded into the model's last layer (``probs``, a Dense layer with softmax):
``softmax((W x + b) / T) == softmax((W / T) x + b / T)``, so the file keeps its architecture, parameter count and
int8 graph. The fit scores the probabilities the runtime reads: with flip TTA, the mean of the two views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_runtime.core.errors import ModelError
from lab.data import FerDataset
from lab.keras_io import load_keras_model, predict_probabilities
from lab.metrics import classification_report, confidence_summary, mean_nll
from lab.provenance import file_sha256, provenance, write_json

SPLIT = "PublicTest"  # the tuning split: the temperature is a tuned setting like any other

OUTPUT_LAYER = "probs"  # every fer-train model ends in this Dense softmax layer (train/models.py)
SEARCH_RANGE = (0.25, 4.0)  # temperatures outside this mean the model is broken, not merely miscalibrated


@dataclass(frozen=True)
class TemperatureFit:
    """The fitted temperature and the negative log-likelihood of the true class before (T = 1) and after."""

    temperature: float
    nll_before: float
    nll_after: float


def tempered_views(views: Sequence[np.ndarray], temperature: float) -> np.ndarray:
    """The mean over views (plain, flipped, ...) of each view's probabilities with its logits divided by
    ``temperature``. Log-probabilities differ from logits by a per-row constant, which the softmax cancels. In float64
    with a 1e-30 floor, unlike :func:`train.distill.tempered` (float32, 1e-7 floor, enough for training targets):
    this must match what the folded model outputs, down to its smallest probabilities."""
    results = []
    for probabilities in views:
        logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-30, 1.0)) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        results.append(exp / exp.sum(axis=1, keepdims=True))
    return np.mean(results, axis=0)


def fit_temperature(labels: np.ndarray, views: Sequence[np.ndarray]) -> TemperatureFit:
    """The temperature in :data:`SEARCH_RANGE` that minimises the NLL of the views' mean: a log-spaced grid, then a
    golden-section search around its best point (the NLL is smooth and, near its minimum, convex in log T)."""
    def nll(log_t: float) -> float:
        return mean_nll(labels, tempered_views(views, float(np.exp(log_t))))

    low, high = np.log(SEARCH_RANGE[0]), np.log(SEARCH_RANGE[1])
    grid = np.linspace(low, high, 41)
    best = int(np.argmin([nll(g) for g in grid]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):  # shrinks the bracket by 0.618**40: far below any difference that matters
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(c) < nll(d):
            b = d
        else:
            a = c
    log_t = (a + b) / 2
    return TemperatureFit(temperature=float(np.exp(log_t)), nll_before=nll(0.0), nll_after=nll(log_t))


def fold_temperature(model, temperature: float) -> None:
    """Divide the output layer's weights and bias by ``temperature``, in place: the model's softmax then outputs
    the tempered probabilities itself."""
    try:
        layer = model.get_layer(OUTPUT_LAYER)
    except ValueError as error:
        raise ModelError(f"model {model.name} has no output layer named {OUTPUT_LAYER!r}; only models written by "
                         f"`fer-train fit` can be temperature-scaled") from error
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if activation != "softmax" or not getattr(layer, "use_bias", False):
        raise ModelError(f"layer {OUTPUT_LAYER!r} of {model.name} is not a Dense softmax layer with a bias; only "
                         f"models written by `fer-train fit` can be temperature-scaled")
    layer.set_weights([w / np.float32(temperature) for w in layer.get_weights()])


def check_temperature(fit: TemperatureFit, model_path: str | Path) -> None:
    """Refuse a fit that landed on the edge of :data:`SEARCH_RANGE`: the model is broken or barely trained."""
    if not SEARCH_RANGE[0] * 1.01 < fit.temperature < SEARCH_RANGE[1] / 1.01:
        raise ModelError(f"{model_path}: the fitted temperature {fit.temperature:.3f} is at the edge of "
                         f"{SEARCH_RANGE}; the model is not merely miscalibrated: check that it is trained")


def temperature_scale(source: str | Path, destination: str | Path, dataset: FerDataset, flip: bool) -> dict:
    """Fit the temperature of the ``.keras`` model ``source`` on PublicTest, write the scaled copy to
    ``destination`` and its record to ``<destination>.temperature.json``; verify that the written file outputs the
    tempered probabilities and every prediction of the source. Returns the record."""
    started = provenance()
    source, destination = Path(source), Path(destination)
    split = dataset.split(SPLIT)
    model = load_keras_model(source)
    views = [predict_probabilities(model, split.images)]
    if flip:  # as the runtime reads a face with model.tta = "flip": the mean of the face and its mirror image
        views.append(predict_probabilities(model, split.images[:, :, ::-1]))
    fit = fit_temperature(split.labels, views)
    check_temperature(fit, source)
    fold_temperature(model, fit.temperature)
    destination.parent.mkdir(parents=True, exist_ok=True)
    model.save(destination)
    scaled_plain = predict_probabilities(load_keras_model(destination), split.images)
    _verify(views[0], scaled_plain, fit.temperature, destination)
    before, after = np.mean(views, axis=0), tempered_views(views, fit.temperature)
    record = {
        "source": {"file": str(source), "sha256": file_sha256(source)},
        "file": destination.name, "sha256": file_sha256(destination),
        "split": SPLIT, "images": int(len(split.labels)), "views": "plain + flipped" if flip else "plain",
        "temperature": fit.temperature,
        # With flip, tempering each view before averaging them can move a near tie; plain predictions never change.
        "accuracy": {"before": classification_report(split.labels, before.argmax(axis=1))["accuracy"],
                     "after": classification_report(split.labels, after.argmax(axis=1))["accuracy"]},
        "before": confidence_summary(split.labels, before), "after": confidence_summary(split.labels, after),
        "provenance": started,
    }
    write_json(destination.with_suffix(".temperature.json"), record)
    return record


def _verify(plain: np.ndarray, scaled: np.ndarray, temperature: float, destination: Path) -> None:
    """The written model must give what the fit promised: the tempered probabilities and the same predictions."""
    expected = tempered_views([plain], temperature)
    worst = float(np.abs(scaled - expected).max())
    changed = int(np.count_nonzero(scaled.argmax(axis=1) != plain.argmax(axis=1)))
    if worst > 1e-3 or changed:
        raise ModelError(f"{destination}: the scaled model differs from the tempered source by up to {worst:.2g} "
                         f"and changes {changed} predictions; the model's last layer is not what "
                         f"`fer-train fit` writes")
