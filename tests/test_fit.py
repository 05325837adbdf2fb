"""Training end to end on a few hundred real images, oversampling hygiene, resume and reports."""

import csv
import json

import numpy as np
import pytest

from edge_runtime.core.errors import FerError
from train.augment import AugmentConfig
from train.fit import FitConfig, epoch_indices, fit, soft_oversampling_targets
from train.leakage import audit, count_exact_duplicates, image_hashes
from train.runs import read_history


def test_oversampling_draws_only_training_images_and_balances(fer_full):
    train = fer_full.split("Training")
    steps = len(train) // 64
    indices = epoch_indices(train.labels, epoch=0, steps=steps, batch_size=64, balance="oversample", seed=0)
    assert indices.shape == (steps, 64) and indices.max() < len(train)
    counts = np.bincount(train.labels[indices.ravel()], minlength=7)
    assert counts.min() > 0.8 * counts.max()  # balanced: disgust (436 images) drawn as often as happy (7215)
    # Every drawn image is a Training image, and oversampling adds no overlap with the held-out splits beyond the
    # dataset's own (FER2013 itself has one PublicTest image whose exact pixels also appear in Training).
    assert all(train.ids[i].startswith("train/") for i in np.unique(indices))
    held_out = set()
    for split in ("PublicTest", "PrivateTest"):
        held_out |= set(image_hashes(fer_full.split(split).images))
    natural_overlap = set(image_hashes(train.images)) & held_out
    assert set(image_hashes(train.images[np.unique(indices)])) & held_out <= natural_overlap
    assert len(natural_overlap) <= 1
    # A different epoch gets a different order; the same epoch the same one (reproducible on resume).
    again = epoch_indices(train.labels, epoch=0, steps=steps, batch_size=64, balance="oversample", seed=0)
    other = epoch_indices(train.labels, epoch=1, steps=steps, batch_size=64, balance="oversample", seed=0)
    assert np.array_equal(indices, again) and not np.array_equal(indices, other)


def test_soft_oversampling_lifts_small_classes_part_of_the_way(fer_full):
    train = fer_full.split("Training")
    counts = np.bincount(train.labels, minlength=7)
    targets = soft_oversampling_targets(train.labels)
    # disgust: sqrt(436 * 7215) = 1774 (x4), happy stays 7215; never fewer than the class has.
    assert targets[1] == 1774 and targets[3] == 7215
    assert all(targets[c] >= counts[c] for c in range(7))
    steps = len(train) // 64
    indices = epoch_indices(train.labels, epoch=0, steps=steps, batch_size=64, balance="soft-oversample", seed=0)
    drawn = np.bincount(train.labels[indices.ravel()], minlength=7)
    expected = np.array([targets[c] for c in range(7)]) / sum(targets.values()) * indices.size
    np.testing.assert_allclose(drawn, expected, rtol=0.1)


@pytest.mark.slow
def test_one_epoch_fit_resume_and_export(fer_small, tmp_path):
    from train.export import export_run

    run = tmp_path / "run"
    # The shipped recipe's parts: cosine schedule with warm-up, AdamW, label smoothing, soft oversampling, erasing.
    recipe = dict(model="cnn", batch_size=32, seed=1, schedule="cosine", warmup_epochs=1, learning_rate=1e-3,
                  weight_decay=0.01, label_smoothing=0.1, balance="soft-oversample",
                  augment=AugmentConfig(brightness=0.2, contrast=0.3, erase_probability=0.5))
    config = FitConfig(epochs=3, **recipe)
    first = fit(fer_small, run, config, verbose=0, stop_after=1)  # a paused run, as at the end of a working session
    assert first.epochs_done == 1 and not first.finished
    assert (run / "best.keras").exists() and (run / "last.keras").exists()
    assert first.data_checks["findings"] == []  # the sharp copy passes its checks
    with pytest.raises(FerError, match="--resume"):
        fit(fer_small, run, config, verbose=0)
    state = fit(fer_small, run, config, resume=True, verbose=0)
    history = read_history(run)
    assert state.epochs_done == 3 and state.finished and [row["epoch"] for row in history] == [1.0, 2.0, 3.0]
    for row in history:
        assert 0 <= row["val_macro_f1"] <= 1 and 0 <= row["val_flip_accuracy"] <= 1
    # The resumed run stays on the cosine curve: warm-up ends at the peak, then decay towards the floor.
    rates = [row["learning_rate"] for row in history]
    assert rates[0] == pytest.approx(1e-3, rel=0.05) and rates[0] > rates[1] > rates[2]

    summary = export_run(run, tmp_path / "models" / "m.keras", fer_small, tmp_path / "report")
    private = summary["PrivateTest"]
    matrix = np.array(private["confusion_matrix"])
    supports = [private["per_class"][name]["support"] for name in private["labels"]]
    assert matrix.sum(axis=1).tolist() == supports == fer_small.split("PrivateTest").class_counts()
    assert private["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    on_disk = json.loads((tmp_path / "models" / "m.metrics.json").read_text())
    assert on_disk["PrivateTest"]["accuracy"] == private["accuracy"]
    assert on_disk["training"]["epochs_run"] == 3 and on_disk["parameters"] == 117_031
    for name in ("metrics.json", "confusion.png", "learning_curves.png", "report.md"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    with open(run / "history.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3

    # Temperature-scaled for a runtime without TTA: every prediction, so every PrivateTest figure, stays the same.
    scaled = export_run(run, tmp_path / "models" / "t.keras", fer_small, tmp_path / "report_t", temperature_tta="none")
    assert scaled["temperature_scaling"]["file"] == "t.keras" and scaled["temperature_scaling"]["views"] == "plain"
    assert scaled["temperature_scaling"]["temperature"] != 1.0 and on_disk["temperature_scaling"] is None
    assert scaled["PrivateTest"]["confusion_matrix"] == private["confusion_matrix"]


def test_leakage_audit_counts_duplicates(fer_full):
    result = audit(fer_full, seed=0)
    paper, honest = result["protocols"].values()
    assert paper["duplicates"]["with_duplicate_in_training"] > 0
    assert paper["test_images"] == sum(paper["test_class_counts"])
    # Oversampling first equalizes the classes in the test set too: the paper's tell-tale ~equal test counts.
    assert max(paper["test_class_counts"]) < 2 * min(paper["test_class_counts"])
    assert paper["duplicates"]["fraction"] > 0.3  # a third or more of the paper-protocol test set was seen in training
    assert honest["duplicates"] == count_exact_duplicates(fer_full.split("PrivateTest"), fer_full.split("Training"))
    assert honest["duplicates"]["with_duplicate_in_training"] == 0


def test_soft_targets_mix_tempered_teacher_probabilities_with_the_labels():
    from train.distill import soft_targets, tempered

    teacher = np.array([[0.7, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]], np.float32)
    assert np.allclose(tempered(teacher, 1.0), teacher, atol=1e-6)
    flat = tempered(teacher, 4.0)
    assert flat.sum() == pytest.approx(1.0) and flat.max() < 0.3 and np.argmax(flat) == 0  # softer, same order
    target = soft_targets(np.eye(7, dtype=np.float32)[[1]], teacher, alpha=0.5, temperature=1.0)
    assert target.sum() == pytest.approx(1.0)
    assert target[0, 1] == pytest.approx(0.55) and target[0, 0] == pytest.approx(0.35)


@pytest.mark.parametrize("change, message", [
    ({"teachers": ("missing_run",)}, "no .keras model there"),
    ({"distill_alpha": 1.5}, "--distill-alpha must lie in 0..1"),
    ({"distill_temperature": 0.0}, "--distill-temperature must be positive"),
])
def test_distillation_settings_are_refused_before_any_work(tmp_path, change, message):
    from dataclasses import replace

    from train.distill import check_distillation

    teacher = tmp_path / "t.keras"
    teacher.write_bytes(b"placeholder: only its presence is checked here")
    config = replace(FitConfig(teachers=(str(teacher),)), **change)
    with pytest.raises(FerError, match=message):
        check_distillation(config)


@pytest.mark.slow
def test_a_student_learns_from_cached_teacher_predictions_on_its_own_augmented_batches(fer_small, tmp_path, caplog):
    from dataclasses import replace

    from train.distill import cache_key, soft_targets
    from train.fit import student_batches

    recipe = dict(model="cnn", batch_size=32, seed=3, balance="soft-oversample",
                  augment=AugmentConfig(erase_probability=0.5))
    fit(fer_small, tmp_path / "teacher", FitConfig(epochs=1, **recipe), verbose=0)
    cache = tmp_path / "cache"
    student = FitConfig(epochs=3, teachers=(str(tmp_path / "teacher" / "best.keras"),), distill_alpha=0.7,
                        distill_temperature=2.0, teacher_cache=str(cache), **recipe)
    fit(fer_small, tmp_path / "student", student, verbose=0, stop_after=1)
    train = fer_small.split("Training")
    steps = len(train) // 32
    folder = cache / cache_key(student, train, steps)
    first = np.load(folder / "epoch_000.npy")
    assert first.shape == (steps, 32, 7) and not (folder / "epoch_001.npy").exists()  # only the epochs trained
    stamp = (folder / "epoch_000.npy").stat().st_mtime_ns
    caplog.clear()  # only the resumed run's records
    with caplog.at_level("INFO"):
        state = fit(fer_small, tmp_path / "student", student, verbose=0, resume=True)
    assert state.epochs_done == 3 and (folder / "epoch_001.npy").exists() and (folder / "epoch_002.npy").exists()
    assert (folder / "epoch_000.npy").stat().st_mtime_ns == stamp  # cached, not recomputed
    # Each epoch's predictions are made just before it, not all up front: a pause loses at most one epoch's.
    steps_logged = [m for m in caplog.messages if m.startswith(("teacher predictions", "epoch "))]
    assert [m.split(" (")[0].split(":")[0] for m in steps_logged] == [
        "teacher predictions for epochs 2..2", "epoch 2/3", "teacher predictions for epochs 3..3", "epoch 3/3"]
    # The student's targets are the labels of its own batches mixed with the teacher's tempered predictions on them.
    images, targets = next(iter(student_batches(train, student, 0, steps, 1)))
    labels = train.labels[epoch_indices(train.labels, 0, steps, 32, "soft-oversample", 3).reshape(-1)[:32]]
    hard = np.eye(7, dtype=np.float32)[labels]
    assert np.allclose(np.asarray(targets), soft_targets(hard, first[0].astype(np.float32), 0.7, 2.0), atol=2e-3)
    assert cache_key(replace(student, seed=4), train, steps) != cache_key(student, train, steps)


def test_a_student_trains_one_epoch_per_span_and_other_runs_all_at_once():
    from train.fit import _spans

    assert _spans(FitConfig(epochs=6), 3, None) == [(3, 6)]
    assert _spans(FitConfig(epochs=6), 3, 5) == [(3, 5)]
    student = FitConfig(epochs=6, teachers=("t.keras",))
    assert _spans(student, 3, None) == [(3, 4), (4, 5), (5, 6)]
    assert _spans(student, 3, 5) == [(3, 4), (4, 5)]


@pytest.mark.slow  # loads TensorFlow
def test_blur_augmentation_softens_images_and_keeps_their_level():
    import tensorflow as tf

    from train.augment import augment_batch

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (8, 48, 48, 1)).astype(np.float32))
    flat = tf.constant(np.full((2, 48, 48, 1), 128.0, np.float32))
    still = dict(flip=False, rotation_deg=0.0, zoom=0.0, shift=0.0)
    seed = tf.constant([3, 7], tf.int64)
    assert np.array_equal(augment_batch(images, seed, AugmentConfig(**still)).numpy(), images.numpy())  # off
    blurred = augment_batch(images, seed, AugmentConfig(**still, blur=1.5, blur_probability=1.0)).numpy()
    before, after = images.numpy().std(axis=(1, 2, 3)), blurred.std(axis=(1, 2, 3))
    assert (after <= before + 1e-3).all() and (after < 0.6 * before).sum() >= 5  # detail smoothed (sigma is 0..1.5)
    assert np.allclose(blurred.mean(axis=(1, 2, 3)), images.numpy().mean(axis=(1, 2, 3)), atol=1.5)  # level kept
    assert np.allclose(augment_batch(flat, seed, AugmentConfig(**still, blur=1.5, blur_probability=1.0)), 128.0)
    half = augment_batch(images, seed, AugmentConfig(**still, blur=1.5, blur_probability=0.5)).numpy()
    untouched = [np.array_equal(half[i], images.numpy()[i]) for i in range(8)]
    assert 0 < sum(untouched) < 8  # some images blurred, some not


@pytest.mark.slow  # loads TensorFlow
def test_mixup_blends_each_image_and_its_label_with_the_next_by_one_weight(fer_small):
    from train.fit import training_batches

    train = fer_small.split("Training")
    still = dict(flip=False, rotation_deg=0.0, zoom=0.0, shift=0.0)
    plain_config = FitConfig(epochs=1, batch_size=16, augment=AugmentConfig(**still))
    mixed_config = FitConfig(epochs=1, batch_size=16, augment=AugmentConfig(**still, mixup=0.4))
    (plain, labels), = training_batches(train, plain_config, 0, 1)
    (mixed, targets), = training_batches(train, mixed_config, 0, 1)
    plain, labels, mixed, targets = (t.numpy() for t in (plain, labels, mixed, targets))
    neighbour_images, neighbour_labels = np.roll(plain, 1, axis=0), np.roll(labels, 1, axis=0)
    weights = []
    for i in range(16):
        differs = np.abs(plain[i] - neighbour_images[i]) > 20
        weight = ((mixed[i] - neighbour_images[i])[differs] / (plain[i] - neighbour_images[i])[differs]).mean()
        np.testing.assert_allclose(mixed[i], weight * plain[i] + (1 - weight) * neighbour_images[i], atol=0.05)
        np.testing.assert_allclose(targets[i], weight * labels[i] + (1 - weight) * neighbour_labels[i], atol=1e-3)
        weights.append(weight)
    assert np.allclose(targets.sum(axis=1), 1.0) and 0 <= min(weights) and max(weights) <= 1
    assert np.std(weights) > 0.1  # Beta(0.4, 0.4): drawn per image, mostly near 0 or 1
    (again, _), = training_batches(train, mixed_config, 0, 1)
    assert np.array_equal(again.numpy(), mixed)  # keyed by the step: a resumed run sees the same mixture


def test_a_weight_average_is_the_plain_mean_of_the_epochs_added():
    from train.averaging import WeightAverage

    epochs = [[np.full((2, 3), value, np.float32), np.array([value * 2], np.float32)] for value in (1.0, 2.0, 6.0)]
    average = WeightAverage()
    for weights in epochs:
        average.add(weights)
    assert average.count == 3
    np.testing.assert_allclose(average.weights[0], np.full((2, 3), 3.0))
    np.testing.assert_allclose(average.weights[1], [6.0])


@pytest.mark.slow  # loads TensorFlow
def test_refreshed_batch_norm_statistics_are_the_plain_mean_and_variance_of_the_images():
    import keras

    from train.averaging import refresh_batch_norm

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    images = np.random.default_rng(0).normal(3.0, 2.0, (512, 4)).astype(np.float32)
    assert refresh_batch_norm(model, images, batch_size=128) == 1
    norm = model.layers[-1]
    np.testing.assert_allclose(norm.moving_mean.numpy(), images.mean(0), atol=1e-4)
    # The mean of the four batches' variances (a plain average, not the 0.99-momentum one).
    batch_variances = images.reshape(4, 128, 4).var(axis=1).mean(0)
    np.testing.assert_allclose(norm.moving_variance.numpy(), batch_variances, rtol=1e-4)
    assert norm.momentum == 0.99  # restored


@pytest.mark.slow  # loads TensorFlow
@pytest.mark.parametrize("norm", ["moving", "refresh"])
def test_the_averaged_models_batch_norm_statistics_are_the_mean_or_measured_again(norm, fer_small, tmp_path):
    import keras

    from train.averaging import RunAverage

    inputs = keras.Input((48, 48, 1))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(inputs))))
    first = [np.full_like(w, 1.0) for w in model.get_weights()]
    second = [np.full_like(w, 3.0) for w in model.get_weights()]
    average = RunAverage.resume(model, tmp_path, 0, fer_small.split("Training"), seed=0, norm=norm)
    for weights in (first, second):
        model.set_weights(weights)
        candidate, _ = average.add_epoch(model, fer_small.split("PublicTest"))
    norm_layer = next(layer for layer in candidate.layers if isinstance(layer, keras.layers.BatchNormalization))
    if norm == "moving":  # every variable, statistics included, is the plain mean of the two epochs'
        for weight in candidate.get_weights():
            np.testing.assert_allclose(weight, 2.0)
    else:  # measured on Training pixels (0..255), far from the epochs' 1 and 3
        assert norm_layer.moving_mean.numpy()[0] > 50


@pytest.mark.slow
def test_weight_averaging_resumes_its_mean_and_competes_for_best(fer_small, tmp_path):
    from lab.keras_io import load_keras_model
    from train.averaging import AVERAGE_FILE
    from train.runs import RunState

    run = tmp_path / "run"
    config = FitConfig(model="cnn", epochs=3, batch_size=32, seed=2, average_from=2)
    fit(fer_small, run, config, verbose=0, stop_after=2)
    after_two = load_keras_model(run / "last.keras").get_weights()
    assert RunState.read(run).averaged_epochs == 1
    state = fit(fer_small, run, config, resume=True, verbose=0)
    after_three = load_keras_model(run / "last.keras").get_weights()
    assert state.averaged_epochs == 2 and state.finished
    scratch = load_keras_model(run / "last.keras")
    scratch.load_weights(run / AVERAGE_FILE)
    for mean, second, third in zip(scratch.get_weights(), after_two, after_three, strict=True):
        np.testing.assert_allclose(mean, (second + third) / 2, rtol=1e-5, atol=1e-6)
    history = read_history(run)
    assert "val_average_accuracy" not in history[0]
    assert [row["epoch"] for row in history if "val_average_accuracy" in row] == [2.0, 3.0]
    best = max(history, key=lambda row: max(row["val_accuracy"], row.get("val_average_accuracy", 0.0)))
    assert state.best_epoch == best["epoch"]
    assert state.best_is_average == (best.get("val_average_accuracy", 0.0) > best["val_accuracy"])


def test_an_average_start_outside_the_run_or_an_unknown_norm_is_refused(tmp_path):
    with pytest.raises(FerError, match="--average-from must lie in 0..3"):
        fit(None, tmp_path, FitConfig(epochs=3, average_from=4))
    with pytest.raises(FerError, match="unknown --average-norm 'mean'; choose one of moving, refresh"):
        fit(None, tmp_path, FitConfig(epochs=3, average_from=1, average_norm="mean"))


@pytest.mark.slow  # loads TensorFlow
def test_the_flip_pair_loss_scores_each_image_and_its_mirror_by_their_mean_probability():
    import keras
    import tensorflow as tf

    from lab.flip_pairs import FlipPairCrossEntropy, mirrored_pairs

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 4, 5, 1)).astype(np.float32)
    targets = np.eye(7, dtype=np.float32)[[0, 3, 6]]
    pairs, paired_targets = (t.numpy() for t in mirrored_pairs(tf.constant(images), tf.constant(targets)))
    assert pairs.shape == (6, 4, 5, 1) and np.array_equal(pairs[0::2], images)
    assert np.array_equal(pairs[1::2], images[:, :, ::-1]) and np.array_equal(paired_targets[1::2], targets)
    probabilities = rng.dirichlet(np.ones(7), 6).astype(np.float32)
    mean = (probabilities[0::2] + probabilities[1::2]) / 2
    smoothed = targets * 0.9 + 0.1 / 7
    expected = np.mean(-(smoothed * np.log(mean)).sum(axis=1))
    loss = FlipPairCrossEntropy(label_smoothing=0.1)
    assert float(loss(paired_targets, probabilities)) == pytest.approx(expected, rel=1e-5)
    # Not the mean of the two views' own losses: the pair is read as one prediction, as flip TTA reads it.
    separate = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(paired_targets, probabilities)
    assert abs(float(separate) - expected) > 1e-3
    assert FlipPairCrossEntropy.from_config(loss.get_config()).label_smoothing == 0.1


@pytest.mark.slow
def test_a_flip_pair_run_trains_on_mirrored_pairs_resumes_and_scores_publictest_itself(fer_small, tmp_path):
    from dataclasses import replace

    from lab.keras_io import load_keras_model, to_model_input
    from train.fit import student_batches

    run = tmp_path / "run"
    config = FitConfig(model="cnn", epochs=2, batch_size=16, seed=2, balance="soft-oversample", label_smoothing=0.1,
                       flip_pairs=True)
    train = fer_small.split("Training")
    images, targets = next(iter(student_batches(train, config, 0, len(train) // 16, 1)))
    assert images.shape[0] == targets.shape[0] == 32
    np.testing.assert_array_equal(images.numpy()[1::2], images.numpy()[0::2, :, ::-1])
    fit(fer_small, run, config, verbose=0, stop_after=1)
    with pytest.raises(FerError, match="trained with --flip-pairs; resume it with --flip-pairs"):
        fit(fer_small, run, replace(config, flip_pairs=False), resume=True, verbose=0)
    state = fit(fer_small, run, config, resume=True, verbose=0)
    history = read_history(run)
    assert state.finished and [row["epoch"] for row in history] == [1.0, 2.0]
    assert all(row["val_loss"] > 0 and 0 <= row["val_accuracy"] <= 1 for row in history)
    # The accuracy the run selects on is the plain one of its best checkpoint, which loads with its own loss.
    best = load_keras_model(run / "best.keras")
    validation = fer_small.split("PublicTest")
    plain = best.predict(to_model_input(validation.images), verbose=0).argmax(1)
    assert state.best_val_accuracy == pytest.approx(np.mean(plain == validation.labels))
    assert type(best.loss).__name__ == "FlipPairCrossEntropy"
    with pytest.raises(FerError, match="--flip-pairs .* class weights"):
        fit(None, tmp_path / "other", replace(config, balance="class-weight"))


@pytest.mark.slow
def test_flip_pairs_mirror_the_mixed_images_and_train_with_weight_averaging(fer_small, tmp_path):
    from lab.keras_io import load_keras_model
    from train.fit import student_batches

    config = FitConfig(model="cnn", epochs=2, batch_size=16, seed=2, flip_pairs=True, average_from=1,
                       augment=AugmentConfig(mixup=0.4))
    train = fer_small.split("Training")
    images, targets = (t.numpy() for t in next(iter(student_batches(train, config, 0, len(train) // 16, 1))))
    # Mixup first, then the pair: each mixed image is followed by its own mirror, with the same mixed target.
    np.testing.assert_array_equal(images[1::2], images[0::2, :, ::-1])
    np.testing.assert_array_equal(targets[1::2], targets[0::2])
    assert np.any(targets.max(axis=1) < 0.99)
    run = tmp_path / "run"
    state = fit(fer_small, run, config, verbose=0)
    history = read_history(run)
    assert state.finished and state.averaged_epochs == 2
    assert [row["epoch"] for row in history if "val_average_accuracy" in row] == [1.0, 2.0]
    assert state.best_val_accuracy == pytest.approx(
        max(max(row["val_accuracy"], row["val_average_accuracy"]) for row in history))
    assert type(load_keras_model(run / "best.keras").loss).__name__ == "FlipPairCrossEntropy"
