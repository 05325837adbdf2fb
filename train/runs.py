"""A training run's records: its configuration (``FitConfig``), its ``state.json`` (``RunState``) and its history.

:mod:`train.fit` writes them; :mod:`train.evaluate`, :mod:`train.export` and
:mod:`train.distill` read them back.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.core.records import JsonRecord
from lab.explicit_lstm import DEFAULT_CELL_STATE_RANGE
from lab.provenance import write_json
from train.augment import AugmentConfig


@dataclass(frozen=True)
class FitConfig(JsonRecord):
    """Hyper-parameters of one training run (recorded in its ``state.json``)."""

    model: str = "cnn_lstm"
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    balance: str = "oversample"
    seed: int = 0
    patience: int = 15
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    schedule: str = "plateau"  # "cosine": warm-up, then cosine decay to min_learning_rate at the last epoch
    warmup_epochs: int = 0
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay instead of Adam
    label_smoothing: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ignore_data_checks: bool = False
    init_weights: str = ""
    quantization_aware: str = ""  # a trained float .keras: fine-tune its int8-simulating copy (lab.quantization)
    calibration_dir: str = "calibration_data"  # its manifest names the images the copy's int8 ranges come from
    cell_range: float = DEFAULT_CELL_STATE_RANGE  # the copy's LSTM cell states: at most +-this (0: min/max)
    jit_compile: bool = False  # measured: XLA is ~25% slower per step on a 2-core CPU
    # Distillation (train.distill): teacher .keras files whose averaged predictions the student also learns from.
    teachers: tuple[str, ...] = ()
    distill_alpha: float = 0.5  # weight of the teachers' soft targets against the hard labels
    distill_temperature: float = 2.0  # > 1 softens the teachers' probabilities
    teacher_cache: str = "runs/teacher_cache"  # where the teachers' predictions per epoch are kept
    # Weight averaging (train.averaging): the mean of every epoch's weights from this one on competes for best.keras.
    average_from: int = 0  # 0: off
    average_norm: str = "moving"  # the average's batch-norm statistics (train.averaging.AVERAGE_NORMS)
    # Flip-aware training (lab.flip_pairs): each image beside its mirror, the loss on their mean probability.
    flip_pairs: bool = False


@dataclass(frozen=True)
class RunState(JsonRecord):
    """A training run's ``state.json``: where it stands, and everything needed to resume and to ship it."""

    config: FitConfig  # the hyper-parameters the run started with
    data_source: str
    train_images: int
    validation_images: int
    train_class_counts: tuple[int, ...]
    epochs_done: int = 0
    best_val_accuracy: float = -1.0
    best_epoch: int = 0  # 0: nothing better than the start (a quantization-aware copy's untuned score)
    best_is_average: bool = False  # best.keras holds the weight average up to best_epoch, not that epoch's weights
    averaged_epochs: int = 0  # epochs in the run's weight average (average.weights.h5)
    wait: int = 0  # epochs since PublicTest accuracy last improved
    wall_seconds: float = 0.0
    stopped_early: bool = False
    finished: bool = False
    start_val_accuracy: float | None = None  # a quantization-aware copy's PublicTest accuracy before fine-tuning
    provenance: tuple[dict[str, Any], ...] = ()  # one entry per process that trained this run
    data_checks: dict[str, Any] | None = None  # statistics and findings of the last start

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunState":
        """The state of the run in ``run_dir``."""
        path = Path(run_dir) / "state.json"
        return cls.from_json(json.loads(path.read_text()), str(path))

    def write(self, run_dir: str | Path) -> None:
        """Write ``state.json`` atomically."""
        write_json(Path(run_dir) / "state.json", self.to_json())


HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_flip_accuracy",
                  "learning_rate", "epoch_seconds", "val_average_accuracy")


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The per-epoch learning curves written by :func:`train.fit.fit`."""
    with open(Path(run_dir) / "history.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def epoch_summary(state: RunState) -> dict:
    """The epoch counts of a run, under the keys metrics files and the Table 8 layout use."""
    return {"epochs_run": state.epochs_done, "best_epoch": state.best_epoch}


def run_epochs(model_path: str | Path) -> dict:
    """``epochs_run`` and ``best_epoch`` of the run a checkpoint sits in (its ``state.json``), or ``{}`` if none."""
    if not (Path(model_path).parent / "state.json").is_file():
        return {}
    return epoch_summary(RunState.read(Path(model_path).parent))
