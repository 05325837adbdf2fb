"""The shared preprocessing is pure and pinned: training, conversion and runtime must see identical inputs."""

import hashlib
import itertools

import numpy as np
import pytest

from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import (
    INPUT_SIZE,
    PREPROCESSING_VERSION,
    preprocess_face,
    restore_blur,
    sharpen_amount,
    sharpness,
)


def _synthetic_bgr() -> np.ndarray:
    """A deterministic 97x131 BGR image with gradients in every channel (no data files needed)."""
    y, x = np.mgrid[0:97, 0:131]
    return np.stack([(x * 2) % 256, (y * 3) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


# The output each preprocessing version gives for the synthetic image (SHA-256, first four pixels). A change of the
# output without a new version fails here; so does a new version without its golden output recorded below.
GOLDEN = {"gray-area48-u8-v1": ("7940fc2cbac202953ef9b7bd78af73d08396ae7ec47e9e9d30b4b8cb6e2c64e3", [2, 3, 4, 6])}


def test_golden_output_is_pinned():
    # If this fails, preprocessing changed: bump PREPROCESSING_VERSION (the runtime then refuses models verified with
    # the old one), record its golden output here, retrain and reconvert.
    out = preprocess_face(_synthetic_bgr())
    assert out.shape == (INPUT_SIZE, INPUT_SIZE) and out.dtype == np.uint8
    assert PREPROCESSING_VERSION in GOLDEN, f"record the golden output of version {PREPROCESSING_VERSION}"
    digest, first_row = GOLDEN[PREPROCESSING_VERSION]
    assert hashlib.sha256(out.tobytes()).hexdigest() == digest
    assert out[0, :4].tolist() == first_row


def test_gray_and_bgr_paths_agree_with_opencv():
    import cv2

    image = _synthetic_bgr()
    expected = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(preprocess_face(image), expected)
    np.testing.assert_array_equal(preprocess_face(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)), expected)
    np.testing.assert_array_equal(preprocess_face(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]), expected)


def test_48x48_input_passes_through_unchanged():
    image = (np.arange(48 * 48) % 256).astype(np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(preprocess_face(image), image)


@pytest.mark.parametrize("bad", [np.zeros((0, 5), np.uint8), np.zeros((5, 5), np.float32),
                                 np.zeros((4, 4, 2), np.uint8)])
def test_bad_images_raise_clear_errors(bad):
    with pytest.raises(FerError):
        preprocess_face(bad)


def _textured_face() -> np.ndarray:
    """A deterministic 48x48 texture with fine and coarse detail, as sharp as a typical FER2013 face (sharpness
    0.38; the median of Training faces is 0.33)."""
    import cv2

    noise = np.random.default_rng(7).uniform(0, 255, (48, 48)).astype(np.float32)
    fine, coarse = cv2.GaussianBlur(noise, (0, 0), 0.8), cv2.GaussianBlur(noise, (0, 0), 3.0)
    return np.clip(128 + 1.5 * (fine - 128) + 2.0 * (coarse - 128), 0, 255).astype(np.uint8)


def test_sharpness_falls_steadily_as_a_face_is_blurred():
    import cv2

    face = _textured_face()
    measured = [sharpness(face)] + [sharpness(cv2.GaussianBlur(face, (0, 0), s)) for s in (0.5, 0.75, 1.0, 1.5, 2.0)]
    assert all(a > b for a, b in itertools.pairwise(measured)), measured
    brighter = np.clip(face.astype(np.int16) // 2 + 60, 0, 255).astype(np.uint8)  # contrast and level changed
    assert sharpness(brighter) == pytest.approx(measured[0], abs=0.02)


def test_a_sharp_or_flat_face_is_left_alone():
    face = _textured_face()
    assert sharpen_amount(sharpness(face)) == 0
    np.testing.assert_array_equal(restore_blur(face), face)
    flat = np.full((48, 48), 90, np.uint8)
    assert sharpness(flat) == 1.0
    np.testing.assert_array_equal(restore_blur(flat), flat)


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_a_blurred_face_is_restored_towards_the_sharp_one(sigma):
    import cv2

    face = _textured_face()
    blurred = cv2.GaussianBlur(face, (0, 0), sigma)
    restored = restore_blur(blurred)
    assert restored.dtype == np.uint8 and restored.shape == face.shape
    assert sharpness(restored) > sharpness(blurred)

    def error(image):
        return float(np.mean((image.astype(np.float32) - face) ** 2))

    assert error(restored) < 0.6 * error(blurred)  # measured: about 0.4 and 0.5
