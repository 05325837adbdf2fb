"""Knowledge distillation: a student learns from the averaged predictions of teacher models as well as the labels.

The student's target for each training image is ``(1 - alpha) * one_hot(label) + alpha * soft``, where ``soft`` is
the teachers' ensemble probability tempered by ``temperature`` (``p ** (1 / T)``, renormalized: softmax of the
teachers' log-probabilities divided by ``T``; ``T > 1`` spreads the mass onto the classes the teachers find
similar, which carries their "dark knowledge"). The student keeps the plain cross-entropy loss, so its checkpoints,
resume and export are those of any run.

Teachers see exactly the augmented images the student sees: training batches are a deterministic function of the
run's seed, balance, batch size, epochs and augmentation (stateless draws keyed by the step), so the teachers'
predictions are computed for each epoch just before the student trains on it, and cached on disk under a key of
all of those plus the teachers' and the images' fingerprints (:func:`cache_key`). A cache is our own file
(predictions, never pixels) and serves every student run with the same recipe: another student architecture,
learning rate or alpha reuses it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edge_runtime.core.contract import file_sha256
from edge_runtime.core.errors import FerError
from lab.data import Split
from lab.keras_io import load_keras_model, model_of_run
from train.runs import FitConfig

log = logging.getLogger(__name__)


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``p ** (1 / T)`` renormalized over the last axis (softmax of ``log p / T``), in float32."""
    if temperature <= 0:
        raise FerError(f"the distillation temperature must be positive, got {temperature}")
    logits = np.log(np.clip(probabilities.astype(np.float32), 1e-7, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)


def soft_targets(one_hot: np.ndarray, teacher_probabilities: np.ndarray, alpha: float,
                 temperature: float) -> np.ndarray:
    """The student's targets: the hard labels mixed with the tempered teacher probabilities, weight ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise FerError(f"the distillation weight alpha must lie in 0..1, got {alpha}")
    return (1.0 - alpha) * one_hot.astype(np.float32) + alpha * tempered(teacher_probabilities, temperature)


def teacher_file(path: str | Path) -> Path:
    """A teacher named on the command line: a run folder means its ``best.keras``."""
    return model_of_run(path, "teacher")


def check_distillation(config: FitConfig) -> None:
    """Refuse distillation settings that cannot work, before any teacher prediction or training step."""
    for teacher in config.teachers:
        teacher_file(teacher)
    if not 0.0 <= config.distill_alpha <= 1.0:
        raise FerError(f"--distill-alpha must lie in 0..1, got {config.distill_alpha}")
    if config.distill_temperature <= 0:
        raise FerError(f"--distill-temperature must be positive, got {config.distill_temperature}")


def cache_key(config: FitConfig, train: Split, steps: int) -> str:
    """What the teachers' predictions depend on: the teachers, the images and labels, and the batch recipe."""
    images = hashlib.sha256(np.ascontiguousarray(train.images).tobytes() + train.labels.astype(np.int64).tobytes())
    recipe = {"teachers": sorted(file_sha256(t) for t in config.teachers), "images": images.hexdigest(),
              "seed": config.seed, "batch_size": config.batch_size, "balance": config.balance,
              "epochs": config.epochs, "steps": steps, "augment": config.augment.to_json()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _loaded(paths: tuple[str, ...]) -> list:
    """The teacher models, loaded once per run (``fit`` asks for their predictions epoch by epoch); a teacher file
    rewritten at the same path is loaded again."""
    return _load_files(tuple((path, Path(path).stat().st_mtime_ns) for path in paths))


@functools.lru_cache(maxsize=1)
def _load_files(files: tuple[tuple[str, int], ...]) -> list:
    return [load_keras_model(path) for path, _ in files]


def teacher_predictions(config: FitConfig, train: Split, steps: int, first_epoch: int, last_epoch: int,
                        epoch_batches: Callable[[int], Iterable]) -> np.ndarray:
    """The ensemble's probabilities for every training batch of epochs ``first_epoch..last_epoch-1``.

    ``epoch_batches(epoch)`` yields that epoch's ``(images, targets)`` batches, the student's own. Each epoch is
    cached as ``<teacher_cache>/<key>/epoch_NNN.npy`` (float16, steps x batch x classes); only the epochs not there
    are augmented and predicted, one batch at a time. Returns float32, shape ``(epochs * steps, batch, classes)``.
    """
    folder = Path(config.teacher_cache) / cache_key(config, train, steps)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.json").write_text(json.dumps({"teachers": list(config.teachers), "seed": config.seed,
                                                    "batch_size": config.batch_size, "epochs": config.epochs},
                                                   indent=2) + "\n")
    missing = [e for e in range(first_epoch, last_epoch) if not (folder / f"epoch_{e:03d}.npy").exists()]
    if missing:
        teachers = _loaded(tuple(config.teachers))
        log.info("teacher predictions for epochs %d..%d (%d teachers, %d batches each) -> %s", missing[0] + 1,
                 missing[-1] + 1, len(teachers), steps, folder)
    for epoch in missing:
        probabilities = np.stack([np.mean([np.asarray(t.predict_on_batch(images)) for t in teachers], axis=0)
                                  for images, _ in epoch_batches(epoch)])
        np.save(folder / f"epoch_{epoch:03d}.tmp.npy", probabilities.astype(np.float16))
        (folder / f"epoch_{epoch:03d}.tmp.npy").replace(folder / f"epoch_{epoch:03d}.npy")
    return np.concatenate([np.load(folder / f"epoch_{e:03d}.npy").astype(np.float32)
                           for e in range(first_epoch, last_epoch)])
