"""The callback that keeps a training run resumable: what each finished epoch writes and decides.

Imported by :func:`train.fit.fit` when training starts (it needs Keras; the CLI reads the run records without it).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from lab.data import Split
from lab.keras_io import to_model_input
from train.averaging import RunAverage
from train.runs import HISTORY_FIELDS, FitConfig, RunState

log = logging.getLogger("train.fit")  # the run's one log, whichever module writes a line of it


class EpochOutcome(NamedTuple):
    """What one finished epoch changes: the run's state, whether it is the best so far, the learning rate to go on
    with (the plateau schedule lowers it)."""

    state: RunState
    improved: bool
    learning_rate: float


def epoch_update(state: RunState, config: FitConfig, epochs_done: int, seconds: float, val_accuracy: float,
                 learning_rate: float) -> EpochOutcome:
    """The state after an epoch (a pure function): best epoch, patience, early stop, and the plateau schedule's
    learning rate."""
    state = replace(state, epochs_done=epochs_done, wall_seconds=round(state.wall_seconds + seconds, 1))
    if val_accuracy > state.best_val_accuracy:
        return EpochOutcome(replace(state, best_val_accuracy=val_accuracy, best_epoch=epochs_done, wait=0,
                                    best_is_average=False), True, learning_rate)
    state = replace(state, wait=state.wait + 1)
    if config.schedule == "plateau" and state.wait % config.lr_patience == 0:
        learning_rate = max(learning_rate * config.lr_factor, config.min_learning_rate)
    if state.wait >= config.patience:
        state = replace(state, stopped_early=True)
    return EpochOutcome(state, False, learning_rate)


def append_history(history: Path, row: dict) -> None:
    """One epoch's row of ``history.csv`` (the header first, in a new file)."""
    new_file = not history.exists()
    with open(history, "a", newline="") as handle:
        writer = csv.DictWriter(handle, HISTORY_FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


class Checkpointer(keras.callbacks.Callback):
    """After every epoch: history row, PublicTest scores, best and last checkpoints, the plateau schedule, early
    stopping, ``--stop-after`` and the weight average; all of it resumable from the run folder."""

    def __init__(self, run_dir: Path, config: FitConfig, state: RunState, validation: Split,
                 last_epoch: int | None, train: Split):
        super().__init__()
        self.run_dir, self.config, self.state = run_dir, config, state
        self.validation, self.train = validation, train
        self.last_epoch = last_epoch
        self.started = 0.0
        self.average = None  # the weight average (train.averaging), loaded at its first epoch

    def _average_step(self, epoch_number: int, state: RunState, row: dict) -> RunState:
        """From ``config.average_from`` on, fold this epoch into the weight average and let the averaged
        model compete for ``best.keras`` (:mod:`train.averaging`)."""
        if not self.config.average_from or epoch_number < self.config.average_from:
            return state
        if self.average is None:
            self.average = RunAverage.resume(self.model, self.run_dir, state.averaged_epochs, self.train,
                                             self.config.seed, self.config.average_norm)
        candidate, accuracy = self.average.add_epoch(self.model, self.validation)
        row["val_average_accuracy"] = accuracy
        state = replace(state, averaged_epochs=self.average.count)
        if accuracy <= state.best_val_accuracy:
            return state
        candidate.save(self.run_dir / "best.keras")
        return replace(state, best_val_accuracy=accuracy, best_epoch=epoch_number, best_is_average=True,
                       wait=0, stopped_early=False)

    def _validation_extras(self) -> dict[str, float]:
        """PublicTest macro-F1 and flip test-time-augmented accuracy (for choosing recipes and TTA); for a flip-pair
        run, which Keras cannot validate (its loss pairs rows), the accuracy and the run's own loss as well."""
        from lab.metrics import classification_report

        images, labels = to_model_input(self.validation.images), self.validation.labels
        plain = self.model.predict(images, batch_size=256, verbose=0)
        flipped = self.model.predict(images[:, :, ::-1], batch_size=256, verbose=0)
        report = classification_report(labels, plain.argmax(1))
        extras = {"val_macro_f1": float(report["macro"]["f1"]),
                  "val_flip_accuracy": float(np.mean((plain + flipped).argmax(1) == labels))}
        if self.config.flip_pairs:
            pairs = np.stack([plain, flipped], axis=1).reshape(-1, plain.shape[1])  # as the run's batches hold them
            targets = np.repeat(np.eye(plain.shape[1], dtype=np.float32)[labels], 2, axis=0)
            extras.update(val_accuracy=float(np.mean(plain.argmax(1) == labels)),
                          val_loss=float(self.model.loss(targets, pairs)))
        return extras

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.monotonic() - self.started
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "learning_rate": learning_rate, "epoch_seconds": round(seconds, 2)}
        row.update({k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs})
        row.update(self._validation_extras())
        val_accuracy = row.get("val_accuracy", 0.0)
        outcome = epoch_update(self.state, self.config, epoch + 1, seconds, val_accuracy, learning_rate)
        if outcome.improved:
            self.model.save(self.run_dir / "best.keras")
        state = self._average_step(epoch + 1, outcome.state, row)
        append_history(self.run_dir / "history.csv", row)
        if outcome.learning_rate != learning_rate:
            self.model.optimizer.learning_rate.assign(outcome.learning_rate)
            log.info("PublicTest accuracy flat for %d epochs: learning rate %.2g -> %.2g",
                     state.wait, learning_rate, outcome.learning_rate)
        if state.stopped_early:
            self.model.stop_training = True
            log.info("early stop: no PublicTest improvement for %d epochs", state.wait)
        if self.last_epoch is not None and epoch + 1 >= self.last_epoch:
            self.model.stop_training = True  # --stop-after: a pause, resumable, not the end of the run
        self.model.save(self.run_dir / "last.keras")
        self.state = state
        state.write(self.run_dir)
        log.info("epoch %d/%d: val_accuracy %.4f (flip TTA %.4f, macro-F1 %.4f; best %.4f at epoch %d), %.0f s",
                 epoch + 1, self.config.epochs, val_accuracy, row["val_flip_accuracy"], row["val_macro_f1"],
                 state.best_val_accuracy, state.best_epoch, seconds)
