"""Sanity checks of a FER2013 copy before hours of training are spent on it.

The check that matters most compares image *sharpness* between splits. Widely
mirrored copies of the image-folder release have a Training split whose every
image is a Gaussian-blurred (sigma ~3 px) version of the original, while
PublicTest and PrivateTest are sharp; a model trained on such a copy learns
blurred faces and fails on sharp ones (docs/dataset.md has the numbers). The
split-level statistics make that visible in seconds; ``fer-train fit`` refuses
such data unless told to ignore the checks.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import cv2
import numpy as np

from lab.data import FerDataset

log = logging.getLogger(__name__)

SHARPNESS_RATIO_LIMIT = 0.6  # Training median sharpness below 60% of a held-out split's is a red flag
CANDIDATE_SIGMAS = (0.5, 1.0, 1.5, 2.0, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 5.0)


class Finding(NamedTuple):
    """One problem found in the data: a short code, and a message a user can act on."""

    code: str
    message: str


def sharpness(images: np.ndarray) -> np.ndarray:
    """Per-image mean absolute horizontal+vertical gradient (grey levels per pixel)."""
    pixels = images.astype(np.float32)
    return np.abs(np.diff(pixels, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(pixels, axis=1)).mean(axis=(1, 2))


def estimate_blur_sigma(sharp_images: np.ndarray, target_sharpness: float) -> float:
    """The Gaussian sigma that brings ``sharp_images`` down to ``target_sharpness`` (median), from a grid."""
    sample = sharp_images[:500]
    best, best_error = 0.0, float("inf")
    for sigma in CANDIDATE_SIGMAS:
        blurred = np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in sample])
        error = abs(float(np.median(sharpness(blurred))) - target_sharpness)
        if error < best_error:
            best, best_error = sigma, error
    return best


def split_statistics(dataset: FerDataset) -> dict:
    """Per split: image count, mean and std of pixels, median sharpness."""
    stats = {}
    for name, split in dataset.splits.items():
        if len(split) == 0:
            continue
        stats[name] = {"images": len(split), "pixel_mean": float(split.images.mean()),
                       "pixel_std": float(split.images.std()),
                       "median_sharpness": float(np.median(sharpness(split.images)))}
    return stats


def check_dataset(dataset: FerDataset) -> tuple[dict, list[Finding]]:
    """Statistics and findings; an empty finding list means the splits look alike."""
    stats = split_statistics(dataset)
    findings = []
    train = stats.get("Training")
    for held_out in ("PublicTest", "PrivateTest"):
        other = stats.get(held_out)
        if not train or not other or other["median_sharpness"] == 0:
            continue
        ratio = train["median_sharpness"] / other["median_sharpness"]
        if ratio < SHARPNESS_RATIO_LIMIT:
            sigma = estimate_blur_sigma(dataset.split(held_out).images, train["median_sharpness"])
            findings.append(Finding(
                "blurred-training-split",
                f"Training images are much blurrier than {held_out} "
                f"(median sharpness {train['median_sharpness']:.1f} vs {other['median_sharpness']:.1f}, "
                f"ratio {ratio:.2f}); they look like a Gaussian blur of sigma ~{sigma:g} px. "
                "A model trained on them fails on sharp faces (see docs/dataset.md). Use an unmodified FER2013 copy "
                "(the Kaggle fer2013.csv or a sharp image release)."))
            break
    for name, split_stats in stats.items():
        if split_stats["pixel_std"] < 5:
            findings.append(Finding("flat-images", f"{name} images are nearly constant (pixel std "
                                    f"{split_stats['pixel_std']:.1f}); the files may be blank or corrupt"))
    for finding in findings:
        log.warning("data check: %s", finding.message)
    return stats, findings
