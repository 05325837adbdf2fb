"""The one preprocessing step shared by training, calibration, verification and runtime.

A face image of any size (grayscale or BGR, uint8) becomes a 48x48 uint8
grayscale array in 0..255. Pixel scaling is *not* done here: every model this
project writes starts with a Rescaling layer, so the model input contract is
raw pixels. Keeping the function pure (array in, array out, no I/O) lets a
golden test pin its exact output.

Bump :data:`PREPROCESSING_VERSION` whenever the output for some input changes;
the converter records it in model metadata and the runtime refuses a mismatch.
"""

from typing import Final

import cv2
import numpy as np

from edge_runtime.core.errors import FerError

INPUT_SIZE: Final[int] = 48
# Files read as still images, by FER2013 loaders and by the runtime's folder and image sources.
IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm",
                                                   ".ppm"})
PREPROCESSING_VERSION: Final[str] = "gray-area48-u8-v1"


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grayscale view of ``image`` (HxW, HxWx1, BGR or BGRA)."""
    if image.dtype != np.uint8:
        raise FerError(f"expected a uint8 image, got dtype {image.dtype}; convert frames to 8-bit first")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise FerError(f"unsupported image shape {image.shape}; expected HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)")


def preprocess_face(image: np.ndarray) -> np.ndarray:
    """Turn a face crop into the model input: 48x48 uint8 grayscale, values 0..255.

    Resizing uses ``INTER_AREA`` (the right filter for shrinking, and what the
    FER2013 images themselves look like); an image already 48x48 is returned
    unchanged (as a contiguous copy).
    """
    gray = to_gray(image)
    if gray.shape[0] == 0 or gray.shape[1] == 0:
        raise FerError(f"cannot preprocess an empty image of shape {image.shape}")
    if gray.shape == (INPUT_SIZE, INPUT_SIZE):
        return np.ascontiguousarray(gray)
    return cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
