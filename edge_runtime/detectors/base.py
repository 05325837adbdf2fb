"""What every face detector shares: the box type, the options, the protocol, and
the detector-independent steps around it (scaling, size filter, duplicate
merging, largest-first ordering, clipped crops)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import cv2
import numpy as np

# Two boxes whose intersection covers this much of the smaller one are the same face.
DUPLICATE_OVERLAP = 0.5


class Box(NamedTuple):
    """A face box in frame pixels, with the detector's confidence (1.0 where it gives none)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def intersection(self, other: "Box") -> int:
        """Area shared with ``other`` (0 when they do not overlap)."""
        width = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        height = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0, width) * max(0, height)


@dataclass(frozen=True)
class DetectorOptions:
    """Detection settings shared by every detector; each backend has its own typed options besides."""

    min_face: int = 32          # smallest face side in pixels; smaller detections are ignored
    max_faces: int = 0          # 0 = all faces, 1 = largest only, N = the N largest
    detect_width: int = 240     # frames wider than this are downscaled for detection (0 = never)
    threads: int = 1            # interpreter threads of model-based detectors


class FaceDetector(Protocol):
    """Finds faces in a grayscale or BGR image; :func:`find_faces` adds scaling and filtering."""

    options: DetectorOptions

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        """Every face at least ``min_size`` pixels wide, in ``image``'s pixels, in no particular order."""
        ...


def find_faces(detector: FaceDetector, image: np.ndarray) -> list[Box]:
    """Faces in ``image`` (frame pixels), largest first, filtered by the detector's options.

    Frames wider than ``detect_width`` are downscaled for detection only:
    detection cost grows with the pixel count, while faces worth classifying
    are far larger than the detector's window, so this is the cheapest speed-up.
    """
    options = detector.options
    height, width = image.shape[:2]
    scale = options.detect_width / width if options.detect_width and width > options.detect_width else 1.0
    small = image if scale == 1.0 else cv2.resize(
        image, (options.detect_width, max(1, int(round(height * scale)))), interpolation=cv2.INTER_AREA)
    found = detector.detect(small, max(1, int(options.min_face * scale)))
    boxes = [Box(int(round(b.x / scale)), int(round(b.y / scale)), int(round(b.w / scale)), int(round(b.h / scale)),
                 b.score) for b in found]
    candidates = sorted((b for b in boxes if min(b.w, b.h) >= options.min_face), key=lambda b: -b.area)
    # Detectors often report one face twice at neighbouring scales: keep the larger box of any pair that mostly overlaps.
    kept: list[Box] = []
    for box in candidates:
        if all(_overlap_of_smaller(box, other) < DUPLICATE_OVERLAP for other in kept):
            kept.append(box)
    return kept[: options.max_faces] if options.max_faces > 0 else kept


def _overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection area as a fraction of the smaller box."""
    smaller = min(a.area, b.area)
    return a.intersection(b) / smaller if smaller > 0 else 0.0


def crop_face(image: np.ndarray, box: Box, margin: float = 0.1) -> np.ndarray | None:
    """The face region grown by ``margin`` (fraction of the box side) and clipped to the frame.

    Faces at the border give a smaller crop, never a zero-size one: a box
    entirely outside the frame returns ``None``.
    """
    height, width = image.shape[:2]
    grow_x, grow_y = int(round(box.w * margin)), int(round(box.h * margin))
    x0, y0 = max(0, box.x - grow_x), max(0, box.y - grow_y)
    x1, y1 = min(width, box.x + box.w + grow_x), min(height, box.y + box.h + grow_y)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return image[y0:y1, x0:x1]
