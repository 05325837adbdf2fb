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
# Test-time augmentation (model.tta): "none", or "flip": the face and its mirror image, their probabilities averaged.
# Here because fer-train fits temperatures for these modes and may import only the core.
TTA_MODES: Final[tuple[str, ...]] = ("none", "flip")


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


# Blur restoration (runtime only; the models learnt on sharp FER2013 images). A face's sharpness is the RMS of its
# finest detail (the image minus a blur of sigma FINE_SIGMA) against that of its coarser detail (minus a blur of
# COARSE_SIGMA): a ratio that does not depend on contrast or brightness, and falls steadily as a face is blurred
# (benchmarks/blur_restoration.py: median 0.33 for FER2013's Training faces, 0.14 at a blur of sigma 1.5 pixels).
FINE_SIGMA: Final[float] = 0.7
COARSE_SIGMA: Final[float] = 2.5
SHARPEN_SIGMA: Final[float] = 1.0  # the unsharp mask's blur; 1.0 restored more than 1.5 at every blur measured
# Unsharp-mask strength by measured sharpness, interpolated: the strength that best restored PublicTest faces blurred
# by a known sigma, against the median sharpness of Training faces blurred alike (benchmarks/blur_restoration.py).
# Measured at blur sigma 2.0, 1.75, 1.5, 1.25, 1.0, 0.75 and 0.5; at 0.5 and below no sharpening did better.
SHARPEN_TABLE: Final[tuple[tuple[float, float], ...]] = ((0.121, 8.0), (0.127, 8.0), (0.138, 6.0), (0.154, 4.0),
                                                         (0.178, 2.0), (0.213, 1.0), (0.276, 0.0))
_SHARPEN_RATIOS, _SHARPEN_AMOUNTS = (np.array(column) for column in zip(*SHARPEN_TABLE, strict=True))
_INNER = np.s_[4:-4, 4:-4]  # the sharpness measure leaves out 4 pixels of each side (the blur's edge handling)


def sharpness(face: np.ndarray) -> float:
    """The fine-to-coarse detail ratio of a 48x48 uint8 face (lower: more blurred); 1.0 for a flat image."""
    pixels = face.astype(np.float32)
    fine = (pixels - cv2.GaussianBlur(pixels, (0, 0), FINE_SIGMA))[_INNER]
    coarse = (pixels - cv2.GaussianBlur(pixels, (0, 0), COARSE_SIGMA))[_INNER]
    coarse_energy = float(np.mean(coarse ** 2))
    if coarse_energy < 1e-3:  # no detail at all: nothing to measure or restore
        return 1.0
    return float(np.sqrt(np.mean(fine ** 2) / coarse_energy))


def unsharp(face: np.ndarray, amount: float) -> np.ndarray:
    """``face`` plus ``amount`` times its detail finer than SHARPEN_SIGMA, clipped to uint8."""
    if amount <= 0:
        return face
    pixels = face.astype(np.float32)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), SHARPEN_SIGMA)
    return np.clip(np.rint(pixels + amount * detail), 0, 255).astype(np.uint8)


def sharpen_amount(measured: float) -> float:
    """The unsharp-mask strength SHARPEN_TABLE gives a face of this sharpness (0 for a sharp face)."""
    return float(np.interp(measured, _SHARPEN_RATIOS, _SHARPEN_AMOUNTS))


def restore_blur(face: np.ndarray) -> np.ndarray:
    """Sharpen a blurred 48x48 face by as much as its measured blur calls for; a sharp face comes back unchanged."""
    return unsharp(face, sharpen_amount(sharpness(face)))
