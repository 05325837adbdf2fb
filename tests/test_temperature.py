"""Temperature scaling: the fit finds the temperature that made probabilities too sure, folding it into the last
layer gives exactly the tempered probabilities, and `fer-train temperature` writes a verified, recorded model."""

import json

import numpy as np
import pytest

from edge_runtime.core.errors import ModelError
from tests.conftest import SHIPPED_KERAS, require, run_cli
from train.temperature import fit_temperature, fold_temperature, tempered_views


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_the_fit_finds_the_temperature_that_made_calibrated_probabilities_too_sure():
    """Labels drawn from softmax(z) are calibrated by construction; softmax(2.5 z) is too sure by a temperature of
    2.5, and softmax(z / 2) too flat by 0.5."""
    rng = np.random.default_rng(11)
    logits = rng.normal(0.0, 1.5, (20_000, 7))
    calibrated = softmax(logits)
    labels = np.array([rng.choice(7, p=row) for row in calibrated])
    for factor in (2.5, 0.5):
        fit = fit_temperature(labels, [softmax(logits * factor)])
        assert abs(fit.temperature / factor - 1) < 0.05
        assert fit.nll_after < fit.nll_before
    assert abs(fit_temperature(labels, [calibrated, calibrated]).temperature - 1) < 0.05


def test_folding_into_the_last_layer_gives_exactly_the_tempered_probabilities():
    import keras

    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="probs")(inputs))
    features = np.random.default_rng(2).normal(0, 3, (64, 5)).astype(np.float32)
    before = np.asarray(model(features))
    fold_temperature(model, 1.7)
    after = np.asarray(model(features))
    np.testing.assert_allclose(after, tempered_views([before], 1.7), atol=1e-5)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
    assert after.max(axis=1).mean() < before.max(axis=1).mean()  # a temperature above 1 flattens

    unnamed = keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="head")(inputs))
    with pytest.raises(ModelError, match="no output layer named 'probs'"):
        fold_temperature(unnamed, 1.7)
    linear = keras.Model(inputs, keras.layers.Dense(7, name="probs")(inputs))
    with pytest.raises(ModelError, match="not a Dense softmax layer"):
        fold_temperature(linear, 1.7)


def test_temperature_scaling_the_shipped_model_keeps_every_prediction(fer_small, tmp_path):
    """On about 140 real PublicTest faces: the written file holds the fitted temperature, gives the source's
    predictions, and its record says so."""
    from lab.keras_io import load_keras_model, predict_probabilities
    from train.temperature import temperature_scale

    source = require(SHIPPED_KERAS, "shipped Keras model")
    destination = tmp_path / "scaled.keras"
    record = temperature_scale(source, destination, fer_small, flip=True)
    faces = fer_small.split("PublicTest")
    original = predict_probabilities(load_keras_model(source), faces.images)
    scaled = predict_probabilities(load_keras_model(destination), faces.images)
    assert (scaled.argmax(axis=1) == original.argmax(axis=1)).all()
    np.testing.assert_allclose(scaled, tempered_views([original], record["temperature"]), atol=1e-3)
    assert abs(record["accuracy"]["after"] - record["accuracy"]["before"]) <= 2 / len(faces.labels)  # flip: near ties
    assert record["after"]["nll"] <= record["before"]["nll"]
    written = json.loads(destination.with_suffix(".temperature.json").read_text())
    assert written["temperature"] == record["temperature"] and written["images"] == len(faces.labels)


def test_a_missing_model_is_one_line_naming_it(tmp_path):
    result = run_cli("-m", "train.cli", "temperature", str(tmp_path / "no_run"), "--out", str(tmp_path / "x.keras"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: model {tmp_path / 'no_run'}: no .keras model")


def test_the_temperature_commands_offer_exactly_the_runtimes_tta_modes(tmp_path):
    """fer-train takes its --tta and --temperature choices from the runtime's one definition of model.tta."""
    for command in (["temperature", str(tmp_path), "--out", str(tmp_path / "t.keras"), "--tta", "mirror"],
                    ["export", str(tmp_path), "--temperature", "mirror"]):
        result = run_cli("-m", "train.cli", *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "'mirror' is not one of 'none', 'flip'" in result.stderr
