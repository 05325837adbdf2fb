"""The three models match the seed paper's tables exactly."""

import pytest

from edge_runtime.errors import FerError
from train.models import (MODEL_BUILDERS, PAPER_PARAMETER_COUNTS, blur_taps, blurs_input, build_model,
                          reflect_indices)


@pytest.mark.parametrize("name, expected", [("cnn", 117_031), ("cnn_lstm_small", 303_495), ("cnn_lstm", 457_863)])
def test_parameter_counts_match_paper(name, expected):
    model = build_model(name)
    assert model.count_params() == expected == PAPER_PARAMETER_COUNTS[name]
    assert model.get_layer("rescale").count_params() == 0
    assert tuple(model.input_shape) == (None, 48, 48, 1)
    assert tuple(model.output_shape) == (None, 7)


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_models_take_raw_pixels(name):
    import numpy as np

    model = build_model(name)
    probabilities = model(np.full((2, 48, 48, 1), 255.0, np.float32), training=False).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_lstms_are_unrolled_for_tflite():
    model = build_model("cnn_lstm")
    assert all(model.get_layer(name).unroll for name in ("lstm1", "lstm2"))


def test_unknown_model():
    with pytest.raises(FerError, match="unknown model 'resnet'"):
        build_model("resnet")


def test_inference_blur_is_identity_in_training_and_gaussian_at_inference(tmp_path):
    import cv2
    import keras
    import numpy as np

    model = build_model("cnn_lstm", inference_blur=3.0)
    assert model.count_params() == 457_863  # the blur adds no parameters
    layer = model.get_layer("inference_blur")
    images = np.random.default_rng(0).random((2, 48, 48, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(images, training=True)), images)
    blurred = np.asarray(layer(images, training=False))
    assert blurred.shape == images.shape
    # OpenCV's own blur with the same taps and its default border (mirrored, edge not repeated).
    taps = blur_taps(3.0)
    reference = np.stack([cv2.sepFilter2D(image[..., 0], -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
                          for image in images])
    np.testing.assert_allclose(blurred[..., 0], reference, atol=1e-5)
    # ... and close to the ideal Gaussian OpenCV builds (the taps are rounded to counts, see blur_taps).
    gaussian = np.stack([cv2.GaussianBlur(image[..., 0], (19, 19), 3.0) for image in images])
    np.testing.assert_allclose(blurred[..., 0], gaussian, atol=2e-3)
    constant = np.full((1, 48, 48, 1), 0.5, np.float32)  # mirrored borders: a flat image stays flat
    np.testing.assert_allclose(np.asarray(layer(constant, training=False)), constant, atol=1e-6)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(images * 255, verbose=0), model.predict(images * 255, verbose=0), atol=1e-6)


def test_blur_taps_are_exact_in_int8_and_keep_brightness():
    import numpy as np

    for sigma in (0.8, 2.0, 3.0, 3.25, 5.0):
        taps = blur_taps(sigma)
        counts = taps / (taps.max() / 127)  # what per-channel int8 weight quantization stores
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
        assert np.round(counts).max() == 127 and np.round(counts).min() >= 1
        assert taps.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_array_equal(taps, taps[::-1])
        assert abs(len(taps) // 2 - 3 * sigma) <= 3  # about 3 sigma each side, less the tails that round to zero


def test_reflect_indices_mirror_without_repeating_the_edge():
    assert reflect_indices(5, 2).tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]


def test_blur_wider_than_the_image_is_refused():
    with pytest.raises(FerError, match="sigma below 16"):
        build_model("cnn", inference_blur=20)


def test_negative_blur_is_refused():
    with pytest.raises(FerError, match="inference-blur"):
        build_model("cnn", inference_blur=-1)


def test_blurs_input_finds_the_inference_blur_also_in_a_nested_model():
    import keras

    blurring = build_model("cnn", inference_blur=3.0)
    assert blurs_input(blurring) and not blurs_input(build_model("cnn"))
    inputs = keras.Input((48, 48, 1))
    assert blurs_input(keras.Model(inputs, blurring(inputs)))
