"""The three models match the seed paper's tables exactly."""

import pytest

from edge_runtime.errors import FerError
from train.models import MODEL_BUILDERS, PAPER_PARAMETER_COUNTS, build_model


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
    reference = np.stack([cv2.GaussianBlur(image[..., 0], (19, 19), 3.0, borderType=cv2.BORDER_CONSTANT)
                          for image in images])
    np.testing.assert_allclose(blurred[:, 9:-9, 9:-9, 0], reference[:, 9:-9, 9:-9], atol=1e-5)
    constant = np.full((1, 48, 48, 1), 0.5, np.float32)  # border correction: a flat image stays flat
    np.testing.assert_allclose(np.asarray(layer(constant, training=False)), constant, atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(images * 255, verbose=0), model.predict(images * 255, verbose=0), atol=1e-6)


def test_negative_blur_is_refused():
    with pytest.raises(FerError, match="inference-blur"):
        build_model("cnn", inference_blur=-1)
