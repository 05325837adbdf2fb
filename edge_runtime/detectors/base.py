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


class Eyes(NamedTuple):
    """The centres of a face's eyes in frame pixels: the one on the image's left first (the person's right eye)."""

    left_x: float
    left_y: float
    right_x: float
    right_y: float

    def scaled(self, factor: float) -> "Eyes":
        return Eyes(*(value * factor for value in self))


class Box(NamedTuple):
    """A face box in frame pixels, with the detector's confidence (1.0 where it gives none) and, from detectors
    that find them, the eye centres (what :func:`align_face` levels and frames the face by)."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    eyes: Eyes | None = None

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
                 b.score, b.eyes.scaled(1 / scale) if b.eyes else None) for b in found]
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


class EyeGeometry(NamedTuple):
    """Where the eyes sit in a face crop, in units of the crop's side."""

    mid_x: float  # the midpoint between the eyes
    mid_y: float
    distance: float  # from one eye to the other


# FER2013's framing, measured by benchmarks/crop_geometry.py with the bundled BlazeFace on 3,000 Training images
# (PublicTest agrees to 0.004): the medians of the eye midpoint and eye distance, as fractions of the 48-pixel side.
FER_EYE_GEOMETRY = EyeGeometry(0.498, 0.398, 0.370)
# Eye keypoints whose distance is outside this share of the box side are a failed landmark, not a face: the box
# frames the crop then. (A frontal face's eyes are 0.37 of a FER2013-framed box apart.)
PLAUSIBLE_EYE_DISTANCE = (0.2, 0.6)
# Aligned crops wider than this are shrunk (INTER_AREA) before the rotation: the model sees 48 pixels, and a
# bilinear warp that shrinks by more than 2x would alias.
MAX_ALIGNED_SIDE = 4 * 48


def eyes_usable(box: Box) -> bool:
    """Whether ``box`` carries eye keypoints that can frame its face."""
    if box.eyes is None or box.w <= 0:
        return False
    eyes = box.eyes
    distance = float(np.hypot(eyes.right_x - eyes.left_x, eyes.right_y - eyes.left_y))
    low, high = PLAUSIBLE_EYE_DISTANCE
    return low * box.w <= distance <= high * box.w and eyes.right_x > eyes.left_x


def alignment_transform(eyes: Eyes, side: int, geometry: EyeGeometry = FER_EYE_GEOMETRY) -> np.ndarray:
    """The 2x3 similarity that levels the eyes and puts them where ``geometry`` says in a ``side``-pixel crop."""
    dx, dy = eyes.right_x - eyes.left_x, eyes.right_y - eyes.left_y
    scale = geometry.distance * side / float(np.hypot(dx, dy))
    angle = np.arctan2(dy, dx)  # the roll: positive when the face leans towards the image's right shoulder
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    mid_x, mid_y = (eyes.left_x + eyes.right_x) / 2, (eyes.left_y + eyes.right_y) / 2
    # Rotate by -angle and scale about the eye midpoint, then move the midpoint to its place in the crop.
    return np.array([[cos, sin, geometry.mid_x * side - (cos * mid_x + sin * mid_y)],
                     [-sin, cos, geometry.mid_y * side - (-sin * mid_x + cos * mid_y)]], dtype=np.float64)


def align_face(image: np.ndarray, eyes: Eyes, geometry: EyeGeometry = FER_EYE_GEOMETRY) -> np.ndarray:
    """The face levelled by its eyes and framed as a FER2013 face (a square crop; edges replicate past the frame).

    The crop keeps the face's own resolution (up to :data:`MAX_ALIGNED_SIDE`),
    so the shared preprocessing does the one downscale to 48 pixels, as for
    every other crop.
    """
    distance = float(np.hypot(eyes.right_x - eyes.left_x, eyes.right_y - eyes.left_y))
    native_side = distance / geometry.distance
    if native_side > 2 * MAX_ALIGNED_SIDE:  # shrink with INTER_AREA first, so the warp shrinks by 2x at most
        factor = 2 * MAX_ALIGNED_SIDE / native_side
        image, eyes = _shrunk_around(image, eyes, native_side, factor)
        native_side *= factor
    side = max(2, int(round(min(native_side, MAX_ALIGNED_SIDE))))
    matrix = alignment_transform(eyes, side, geometry)
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _shrunk_around(image: np.ndarray, eyes: Eyes, native_side: float, factor: float) -> tuple[np.ndarray, Eyes]:
    """The region that holds the face (at any roll), shrunk by ``factor`` with INTER_AREA; eyes in its pixels."""
    mid_x, mid_y = (eyes.left_x + eyes.right_x) / 2, (eyes.left_y + eyes.right_y) / 2
    reach = native_side * 1.5  # covers the crop's corners at any roll, wherever the eyes sit in it
    height, width = image.shape[:2]
    x0, y0 = max(0, int(mid_x - reach)), max(0, int(mid_y - reach))
    x1, y1 = min(width, int(mid_x + reach) + 1), min(height, int(mid_y + reach) + 1)
    region = image[y0:y1, x0:x1]
    size = (max(1, int(round(region.shape[1] * factor))), max(1, int(round(region.shape[0] * factor))))
    small = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    return small, Eyes((eyes.left_x - x0) * factor, (eyes.left_y - y0) * factor,
                       (eyes.right_x - x0) * factor, (eyes.right_y - y0) * factor)


def face_crop(image: np.ndarray, box: Box, margin: float, align: bool) -> np.ndarray | None:
    """The crop the classifier sees: aligned by the eyes when asked and possible, else the box with ``margin``."""
    if align and eyes_usable(box):
        return align_face(image, box.eyes)
    return crop_face(image, box, margin)
