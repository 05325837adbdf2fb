"""Stochastic weight averaging (SWA): the running mean of a run's weights at the end of each epoch from a given one.

Averaging the weights that a constant or slowly decaying learning rate visits finds a flatter point than any one of
them (Izmailov et al., 2018). The raw running mean covers every variable, batch-normalization statistics included,
and is kept in the run folder (``average.weights.h5``) so that a paused run resumes it. The averaged model's
batch-normalization statistics are either that mean of the epochs' moving statistics (``moving``, the default) or
measured again on clean Training images (``refresh``, :func:`refresh_batch_norm`, as the SWA paper does). Measured on
Model 3 (docs/training.md, "Students"): ``refresh`` costs about 1 pp of PublicTest accuracy, even for the "average" of
one epoch, because the layers learnt on batches normalized with augmented statistics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lab.data import Split
from lab.keras_io import to_model_input

log = logging.getLogger(__name__)

AVERAGE_FILE = "average.weights.h5"
AVERAGE_NORMS = ("moving", "refresh")  # where the averaged model's batch-normalization statistics come from
REFRESH_IMAGES = 8192  # Training images the averaged model's batch-normalization statistics are measured on
REFRESH_BATCH = 256


class WeightAverage:
    """The running mean of a model's weights (every variable, in ``model.get_weights()`` order) over ``count``
    epochs."""

    def __init__(self, weights: list[np.ndarray] | None = None, count: int = 0):
        self.weights = [np.array(w, dtype=np.float64) for w in weights or []]
        self.count = count

    def add(self, weights: list[np.ndarray]) -> None:
        """Fold one epoch's weights into the mean."""
        if not self.count:
            self.weights = [np.array(w, dtype=np.float64) for w in weights]
        else:
            for mean, new in zip(self.weights, weights, strict=True):
                mean += (new - mean) / (self.count + 1)
        self.count += 1

    def save(self, model, run_dir: Path) -> None:
        """Keep the raw mean beside the run's checkpoints (written into ``model``, a scratch copy)."""
        model.set_weights(self.as_model_weights(model))
        model.save_weights(run_dir / AVERAGE_FILE)

    @classmethod
    def load(cls, model, run_dir: Path, count: int) -> "WeightAverage":
        """The mean a paused run kept, over ``count`` epochs (empty when ``count`` is 0)."""
        if not count:
            return cls()
        model.load_weights(run_dir / AVERAGE_FILE)
        return cls(model.get_weights(), count)

    def as_model_weights(self, model) -> list[np.ndarray]:
        """The mean in the dtypes of ``model``'s own variables."""
        return [mean.astype(w.dtype) for mean, w in zip(self.weights, model.get_weights(), strict=True)]


def refresh_batch_norm(model, images: np.ndarray, batch_size: int = REFRESH_BATCH) -> int:
    """Measure every batch-normalization layer's moving mean and variance as the plain average over ``images``
    (model input, already scaled), in the training-mode forward pass those statistics stand in for. Returns the
    number of layers refreshed."""
    from keras import layers

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    try:
        for index, start in enumerate(range(0, len(images), batch_size)):
            for layer in norms:  # moving = moving * m + batch * (1 - m): m = n / (n + 1) keeps a plain mean
                layer.momentum = index / (index + 1)
            model(images[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return len(norms)


class RunAverage:
    """A training run's weight average: kept in its folder, rebuilt into a model and scored after each epoch."""

    def __init__(self, run_dir: Path, average: WeightAverage, refresh_images: np.ndarray | None):
        self.run_dir, self.average, self.refresh_images = run_dir, average, refresh_images

    @classmethod
    def resume(cls, model, run_dir: Path, count: int, train: Split, seed: int, norm: str) -> "RunAverage":
        """The average of ``count`` epochs a run kept in ``run_dir`` (a new one when ``count`` is 0). With ``norm``
        "refresh", its batch-normalization statistics are measured on a fixed random draw of ``train`` (a split may
        be stored in class order), not augmented; with "moving" they are the mean of the epochs' own."""
        import keras

        average = WeightAverage.load(keras.models.clone_model(model), run_dir, count)
        if norm == "moving":
            return cls(run_dir, average, None)
        chosen = np.sort(np.random.default_rng(seed).permutation(len(train))[:REFRESH_IMAGES])
        return cls(run_dir, average, to_model_input(train.images[chosen]))

    @property
    def count(self) -> int:
        return self.average.count

    def add_epoch(self, model, validation: Split) -> tuple[object, float]:
        """Fold ``model``'s weights in, keep the mean, and return the averaged model (its batch-normalization
        statistics measured again when refresh images were given) with its accuracy on ``validation``."""
        import keras

        candidate = keras.models.clone_model(model)
        self.average.add(model.get_weights())
        self.average.save(candidate, self.run_dir)  # leaves the raw mean in ``candidate``
        if self.refresh_images is not None:
            refresh_batch_norm(candidate, self.refresh_images)
        predicted = candidate.predict(to_model_input(validation.images), batch_size=256, verbose=0).argmax(1)
        accuracy = float(np.mean(predicted == validation.labels))
        log.info("weight average of %d epochs: PublicTest accuracy %.4f", self.count, accuracy)
        return candidate, accuracy
