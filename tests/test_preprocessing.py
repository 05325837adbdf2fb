"""The shared preprocessing is pure and pinned: training, conversion and runtime must see identical inputs."""

import hashlib

import numpy as np
import pytest

from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import INPUT_SIZE, PREPROCESSING_VERSION, preprocess_face


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


@pytest.mark.parametrize("bad", [np.zeros((0, 5), np.uint8), np.zeros((5, 5), np.float32), np.zeros((4, 4, 2), np.uint8)])
def test_bad_images_raise_clear_errors(bad):
    with pytest.raises(FerError):
        preprocess_face(bad)
