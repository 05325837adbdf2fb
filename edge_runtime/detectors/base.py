"""What every face detector shares: the options, the protocol, and
the detector-independent steps around it (scaling, size filter, duplicate
merging, largest-first ordering, clipped crops)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.core.faces import Box

# Two boxes whose intersection covers this much of the smaller one are the same face.
DUPLICATE_OVERLAP = 0.5


@dataclass(frozen=True)
class DetectorOptions:
    """Detection settings shared by every detector; each backend has its own typed options besides."""

    min_face: int = 32          # smallest face side in pixels; smaller detections are ignored
    max_faces: int = 0          # 0 = all faces, 1 = largest only, N = the N largest
    detect_width: int = 240     # frames wider than this are downscaled for detection (0 = never)
    threads: int = 1            # interpreter threads of model-based detectors


@dataclass(frozen=True)
class CropOptions:
    """How a face box becomes the classifier's crop (see :func:`face_crop`); the ``[detector]`` section sets both."""

    margin: float = 0.0  # grow the box by this fraction of its side on every side
    align: bool = True  # level the face by its eye keypoints
    restore_blur: bool = True  # sharpen a blurred 48x48 crop (edge_runtime.core.preprocessing.restore_blur)


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
                 b.score, b.eyes.scaled(1 / scale) if b.eyes else None) for b in found]
    candidates = sorted((b for b in boxes if min(b.w, b.h) >= options.min_face), key=lambda b: -b.area)
    # Detectors often report one face twice at neighbouring scales: keep the larger box of any pair that mostly
    # overlaps.
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


# Eye keypoints whose distance is outside this share of the box side are a failed landmark, not a face: such a face
# is cropped without levelling. (A frontal face's eyes are about 0.37 of the box side apart.)
PLAUSIBLE_EYE_DISTANCE = (0.2, 0.6)
# Rolls beyond this are a failed landmark too (or a face lying down, which FER2013 does not hold either).
MAX_ROLL_DEGREES = 45.0
# Below this roll the crop is cut straight: a warp would cost time and change nothing the model can see.
MIN_ROLL_DEGREES = 2.0


def roll_degrees(box: Box) -> float | None:
    """The face's roll from its eye keypoints (positive: the eye on the image's right is lower), or None when the
    box has no plausible eyes."""
    if box.eyes is None or box.w <= 0:
        return None
    eyes = box.eyes
    dx, dy = eyes.right_x - eyes.left_x, eyes.right_y - eyes.left_y
    low, high = PLAUSIBLE_EYE_DISTANCE
    if dx <= 0 or not low * box.w <= float(np.hypot(dx, dy)) <= high * box.w:
        return None
    roll = float(np.degrees(np.arctan2(dy, dx)))
    return roll if abs(roll) <= MAX_ROLL_DEGREES else None


def level_face(image: np.ndarray, box: Box, margin: float, roll: float) -> np.ndarray:
    """The box grown by ``margin``, turned by ``-roll`` about its centre so the eyes are level (edges replicate)."""
    width, height = box.w * (1 + 2 * margin), box.h * (1 + 2 * margin)
    centre_x, centre_y = box.x + box.w / 2, box.y + box.h / 2
    matrix = cv2.getRotationMatrix2D((centre_x, centre_y), roll, 1.0)
    matrix[0, 2] += width / 2 - centre_x
    matrix[1, 2] += height / 2 - centre_y
    size = (max(2, int(round(width))), max(2, int(round(height))))
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_crop(image: np.ndarray, box: Box, margin: float, align: bool) -> np.ndarray | None:
    """The crop the classifier sees: the box grown by ``margin``, levelled by the eyes when ``align`` and the
    detector found plausible eyes (a box wholly outside the frame gives None)."""
    straight = crop_face(image, box, margin)
    roll = roll_degrees(box) if align and straight is not None else None
    if roll is None or abs(roll) < MIN_ROLL_DEGREES:
        return straight
    return level_face(image, box, margin, roll)
