"""Training with the honest protocol: fit on Training, select on PublicTest.

Class imbalance is handled on the Training split only, after the split:
imbalanced-learn's ``RandomOverSampler`` (default) or class weights. The epoch
length stays fixed at the size of the Training split (rounded down to whole
batches), drawing each epoch from a freshly oversampled, shuffled index set, so
oversampling does not make epochs longer.

Every epoch writes ``last.keras`` (model + optimizer), ``best.keras`` when
PublicTest accuracy improves, a row of ``history.csv`` and ``state.json``;
``resume=True`` continues from there with the same data order and augmentation.
"""

from __future__ import annotations

import csv
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_runtime.core.errors import DataError, FerError
from edge_runtime.core.labels import NUM_CLASSES
from lab.data import FerDataset, Split
from lab.keras_io import load_keras_model, to_model_input
from lab.provenance import provenance
from train.averaging import AVERAGE_NORMS
from train.data_checks import check_dataset
from train.runs import HISTORY_FIELDS, FitConfig, RunState

log = logging.getLogger(__name__)

BALANCE_MODES = ("oversample", "soft-oversample", "class-weight", "none")
SCHEDULES = ("plateau", "cosine")


def epoch_indices(labels: np.ndarray, epoch: int, steps: int, batch_size: int, balance: str, seed: int) -> np.ndarray:
    """Training-set indices for one epoch, shape ``(steps, batch_size)``.

    With ``balance="oversample"`` the indices come from a RandomOverSampler
    resampling of the Training labels (seeded per epoch), shuffled and cut to
    the fixed epoch length; ``"soft-oversample"`` resamples each class only up
    to the geometric mean of its count and the largest class's (disgust x4
    instead of x16), a milder mix; otherwise from a shuffle of all Training images.
    """
    rng = np.random.default_rng([seed, epoch])
    if balance in ("oversample", "soft-oversample"):
        from imblearn.over_sampling import RandomOverSampler

        strategy = soft_oversampling_targets(labels) if balance == "soft-oversample" else "auto"
        sampler = RandomOverSampler(sampling_strategy=strategy, random_state=int(rng.integers(2**31 - 1)))
        resampled, _ = sampler.fit_resample(np.arange(len(labels)).reshape(-1, 1), labels)
        pool = resampled[:, 0]
    else:
        pool = np.arange(len(labels))
    needed = steps * batch_size
    order = rng.permutation(pool)
    while len(order) < needed:  # tiny datasets: cycle until one epoch is full
        order = np.concatenate([order, rng.permutation(pool)])
    return order[:needed].reshape(steps, batch_size)


def soft_oversampling_targets(labels: np.ndarray) -> dict[int, int]:
    """Per-class sample counts for ``soft-oversample``: sqrt(count * largest count), never fewer than count."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    largest = counts.max()
    return {c: int(max(counts[c], round(np.sqrt(counts[c] * largest)))) for c in range(NUM_CLASSES) if counts[c]}


def learning_rate_schedule(config: FitConfig, steps_per_epoch: int):
    """The optimizer's learning rate: a constant (lowered on plateaus by the checkpointer) or warm-up + cosine.

    The cosine schedule is a function of the optimizer's step count, which is
    saved with every checkpoint, so a resumed run continues on the same curve.
    """
    if config.schedule == "plateau":
        return config.learning_rate
    import keras

    warmup_steps = config.warmup_epochs * steps_per_epoch
    decay_steps = max(1, (config.epochs - config.warmup_epochs) * steps_per_epoch)
    floor = config.min_learning_rate / config.learning_rate
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(config.learning_rate / 10, decay_steps, alpha=floor,
                                                      warmup_target=config.learning_rate, warmup_steps=warmup_steps)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps, alpha=floor)


def make_optimizer(config: FitConfig, steps_per_epoch: int):
    """Adam, or AdamW when ``weight_decay`` > 0, on the configured learning-rate schedule."""
    import keras

    rate = learning_rate_schedule(config, steps_per_epoch)
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced class weights ``n / (k * count)``; absent classes get weight 0."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    present = np.count_nonzero(counts)
    return {c: (len(labels) / (present * counts[c]) if counts[c] else 0.0) for c in range(NUM_CLASSES)}


def training_batches(train: Split, config: FitConfig, first_epoch: int, steps: int, last_epoch: int | None = None,
                     soft: np.ndarray | None = None):
    """The augmented batches of epochs ``first_epoch..last_epoch-1``: ``(images, targets)``, the targets one-hot,
    or mixed with ``soft`` (the tempered teacher probabilities of each batch, :mod:`train.distill`)."""
    import tensorflow as tf

    from train.augment import augment_batch, mixup_batch

    last_epoch = config.epochs if last_epoch is None else last_epoch
    schedule = np.stack([epoch_indices(train.labels, e, steps, config.batch_size, config.balance, config.seed)
                         for e in range(first_epoch, last_epoch)]).reshape(-1, config.batch_size)
    images = tf.constant(train.images[..., None])
    labels = tf.constant(train.labels)
    augment = config.augment
    seed = config.seed
    teacher = tf.constant(soft, tf.float32) if soft is not None else None
    first_step, alpha = first_epoch * steps, config.distill_alpha

    def make_batch(step, index):
        batch = tf.cast(tf.gather(images, index), tf.float32)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
        batch = augment_batch(batch, batch_seed, augment)
        targets = tf.one_hot(tf.gather(labels, index), NUM_CLASSES)
        if augment.mixup > 0:  # before the teachers' targets: they were predicted on the mixed images
            mixup_seed = tf.stack([tf.constant(seed, tf.int64), -1 - step])  # never another batch's draws
            batch, targets = mixup_batch(batch, targets, mixup_seed, augment.mixup)
        if teacher is not None:
            targets = (1.0 - alpha) * targets + alpha * tf.gather(teacher, step - first_step)
        return batch, targets

    dataset = tf.data.Dataset.from_tensor_slices(schedule).enumerate(start=first_epoch * steps)
    return dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(4)


def fit(dataset: FerDataset, run_dir: str | Path, config: FitConfig, *, resume: bool = False,
        verbose: int | None = None, stop_after: int | None = None) -> RunState:
    """Train ``config.model`` on ``dataset`` into ``run_dir``; returns the final :class:`RunState`.

    With ``resume=True`` an existing ``run_dir`` continues from ``last.keras``;
    without it an existing checkpoint is an error (nothing is overwritten).
    ``stop_after`` pauses the run after that many epochs in all (a later call
    with ``resume=True`` continues it, on the same learning-rate schedule).
    """
    import keras

    _check_fit_config(config)
    run_dir = Path(run_dir)
    if verbose is None:  # a progress bar on a terminal, one line per epoch in logs (nohup, journald)
        verbose = 1 if sys.stderr.isatty() else 2
    train, validation = dataset.split("Training"), dataset.split("PublicTest")
    data_statistics, findings = check_dataset(dataset)
    if findings and not config.ignore_data_checks:
        raise DataError("the dataset failed its checks: " + " | ".join(f.message for f in findings) +
                        " (pass --ignore-data-checks to train on it anyway; the findings are recorded with the run)")
    keras.utils.set_random_seed(config.seed)
    if resume and (run_dir / "state.json").exists() and (run_dir / "last.keras").exists():
        model, state, config = _resume_run(run_dir, config)
    else:
        model, state, config = _start_run(run_dir, config, dataset, resume)
    state = replace(state, provenance=(*state.provenance, provenance()),
                    data_checks={"statistics": data_statistics, "findings": [f._asdict() for f in findings]})
    first_epoch = state.epochs_done
    if state.stopped_early or first_epoch >= config.epochs:
        log.info("nothing to do: run finished after %d epochs", first_epoch)
        return state
    steps = max(1, len(train) // config.batch_size)
    weights = class_weights(train.labels) if config.balance == "class-weight" else None
    validation_data = (to_model_input(validation.images), keras.utils.to_categorical(validation.labels, NUM_CLASSES))
    if config.quantization_aware and first_epoch == 0 and state.start_val_accuracy is None:
        state = _score_quantization_aware_start(model, state, validation_data, run_dir)
    from train.checkpointer import Checkpointer

    checkpointer = Checkpointer(run_dir, config, state, validation, stop_after, train)
    for start, end in _spans(config, first_epoch, stop_after):
        model.fit(student_batches(train, config, start, steps, end), epochs=end, initial_epoch=start,
                  steps_per_epoch=steps, validation_batch_size=256,
                  validation_data=None if config.flip_pairs else validation_data,  # its loss pairs rows
                  class_weight=weights, callbacks=[checkpointer],
                  verbose=verbose, shuffle=False)  # the dataset is already shuffled per epoch, reproducibly
        if checkpointer.state.stopped_early:
            break
    state = checkpointer.state
    state = replace(state, finished=state.epochs_done >= config.epochs or state.stopped_early)
    state.write(run_dir)
    return state


def _spans(config: FitConfig, first_epoch: int, stop_after: int | None) -> list[tuple[int, int]]:
    """The epochs to train, as ``(first, end)`` spans, one ``model.fit`` each: all at once, or with teachers one
    epoch at a time, so that each epoch's teacher predictions are made just before it (a pause loses at most one
    epoch's). The learning-rate schedule spans ``config.epochs`` whatever the spans."""
    last_epoch = min(config.epochs, stop_after or config.epochs)
    if not config.teachers:
        return [(first_epoch, last_epoch)]
    return [(epoch, epoch + 1) for epoch in range(first_epoch, last_epoch)]


def _check_fit_config(config: FitConfig) -> None:
    """Refuse settings ``fit`` cannot run with, before any data is loaded."""
    if config.balance not in BALANCE_MODES:
        raise FerError(f"unknown balance mode {config.balance!r}; choose one of {', '.join(BALANCE_MODES)}")
    if config.schedule not in SCHEDULES:
        raise FerError(f"unknown schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if config.teachers:
        from train.distill import check_distillation

        check_distillation(config)
    if not 0 <= config.average_from <= config.epochs:
        raise FerError(f"--average-from must lie in 0..{config.epochs} (the run's epochs; 0 = off), "
                       f"got {config.average_from}")
    if config.average_norm not in AVERAGE_NORMS:
        raise FerError(f"unknown --average-norm {config.average_norm!r}; choose one of {', '.join(AVERAGE_NORMS)}")
    if config.flip_pairs and config.balance == "class-weight":
        raise FerError("--flip-pairs scores each image with its mirror as one loss, which per-image class weights "
                       "cannot weigh; use --balance soft-oversample or oversample with it")
    if config.batch_size < 1 or config.epochs < 1:
        raise FerError(f"batch size and epochs must be positive, got {config.batch_size} and {config.epochs}")


def _resume_run(run_dir: Path, config: FitConfig):
    """The model, state and configuration of the run in ``run_dir``, continued from its last epoch."""
    state = RunState.read(run_dir)
    if config.quantization_aware:
        config = replace(config, model=state.config.model)
    if state.config.model != config.model:
        raise FerError(f"{run_dir} holds a {state.config.model!r} run, not {config.model!r}; "
                       "use another --out or the same --model")
    if state.config.flip_pairs != config.flip_pairs:  # its checkpoint's loss expects (or not) mirrored pairs
        wanted = "with" if state.config.flip_pairs else "without"
        raise FerError(f"{run_dir} was trained {wanted} --flip-pairs; resume it {wanted} --flip-pairs")
    model = load_keras_model(run_dir / "last.keras")  # registers the custom layers and losses a checkpoint may hold
    planned = state.config.epochs
    if state.config.schedule == "cosine" and planned != config.epochs:
        log.warning("the cosine schedule of %s was set for %d epochs when the run started; --epochs %d does not "
                    "change it (epochs past %d train at the floor rate)", run_dir, planned, config.epochs, planned)
    _truncate_history(run_dir / "history.csv", state.epochs_done)
    log.info("resuming %s after epoch %d (best PublicTest accuracy %.4f)", run_dir, state.epochs_done,
             state.best_val_accuracy)
    return model, state, config


def _start_run(run_dir: Path, config: FitConfig, dataset: FerDataset, resume: bool):
    """A new, compiled model (or the quantization-aware copy of a trained one) and the run's first state."""
    import keras

    from train.models import build_model

    if (run_dir / "last.keras").exists() and not resume:
        raise FerError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "history.csv").unlink(missing_ok=True)
    if config.quantization_aware:
        model = _quantization_aware_start(config.quantization_aware, dataset, Path(config.calibration_dir),
                                           config.cell_range)
        config = replace(config, model=model.name.removesuffix("_qat"))
    else:
        model = build_model(config.model)
    if config.init_weights:
        from train.models import copy_weights

        copied = copy_weights(load_keras_model(config.init_weights), model)
        log.info("initialized %d layers from %s", copied, config.init_weights)
    train, validation = dataset.split("Training"), dataset.split("PublicTest")
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    if config.flip_pairs:
        from lab.flip_pairs import FlipPairCrossEntropy

        loss = FlipPairCrossEntropy(label_smoothing=config.label_smoothing)
    model.compile(optimizer=make_optimizer(config, max(1, len(train) // config.batch_size)), loss=loss,
                  metrics=["accuracy"], jit_compile=config.jit_compile)
    state = RunState(config=config, data_source=dataset.source, train_images=len(train),
                     validation_images=len(validation), train_class_counts=tuple(train.class_counts()))
    return model, state, config


def _score_quantization_aware_start(model, state: RunState, validation_data, run_dir: Path) -> RunState:
    """The int8-simulating copy before any fine-tuning competes for "best" too: fine-tuning must earn its place."""
    images, one_hot = validation_data  # scored by prediction, not evaluate(): a flip-pair loss pairs the rows
    start_accuracy = np.mean(model.predict(images, batch_size=256, verbose=0).argmax(1) == one_hot.argmax(1))
    state = replace(state, start_val_accuracy=float(start_accuracy), best_val_accuracy=float(start_accuracy),
                    best_epoch=0)
    model.optimizer.build(model.trainable_variables)  # saved like every other checkpoint, optimizer included
    model.save(run_dir / "best.keras")
    state.write(run_dir)
    log.info("quantization-aware copy before fine-tuning: PublicTest accuracy %.4f", start_accuracy)
    return state


def student_batches(train: Split, config: FitConfig, first_epoch: int, steps: int, end_epoch: int | None = None):
    """The batches of epochs ``first_epoch..end_epoch-1`` (default: to the end of the run) that ``fit`` trains on;
    with teachers, their targets mix in the teachers' cached predictions; with ``flip_pairs``, each image is
    followed by its mirror (the teachers predict the images alone, so their cache serves either way)."""
    last_epoch = min(config.epochs, end_epoch or config.epochs)
    soft = None
    if config.teachers:
        from train.distill import teacher_predictions, tempered

        probabilities = teacher_predictions(config, train, steps, first_epoch, last_epoch,
                                            lambda epoch: training_batches(train, config, epoch, steps, epoch + 1))
        soft = tempered(probabilities, config.distill_temperature)
    batches = training_batches(train, config, first_epoch, steps, last_epoch, soft)
    if config.flip_pairs:
        from lab.flip_pairs import mirrored_pairs

        batches = batches.map(mirrored_pairs)
    return batches


def _quantization_aware_start(float_model_path: str, dataset: FerDataset, calibration_dir: Path,
                               cell_range: float):
    """The int8-simulating copy of a trained float model, its ranges from fer-convert's calibration images.

    The images are those of the manifest in ``calibration_dir`` (the checked-in
    ``calibration_data/manifest.csv`` by default), found in ``dataset`` as
    ``fer-convert`` finds them, so both measure ranges on the same faces; LSTM
    cell states are capped at +-``cell_range`` as ``fer-convert`` caps them.
    """
    from lab.calibration import MANIFEST_NAME, manifest_images
    from lab.quantization import quantization_aware_model

    calibration = manifest_images(dataset, calibration_dir / MANIFEST_NAME)
    model = quantization_aware_model(load_keras_model(float_model_path), calibration, cell_range=cell_range)
    log.info("quantization-aware fine-tuning of %s (ranges from %d calibration images)", float_model_path,
             len(calibration))
    return model


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows past the last checkpointed epoch (a crash between the two writes)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= epochs_done]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
