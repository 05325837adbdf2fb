"""The records about faces that cross the runtime's seams: where a detector found a face, and what the runtime
says about it (one event per face per frame, the changes of a tracked face, and periodic summaries).

Every part of the runtime that consumes one of these imports it from here, so no part imports another for its types.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from edge_runtime.core.records import JsonRecord


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
    that find them, the eye centres (what :func:`face_crop` levels the face by)."""

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
class FaceEvent(JsonRecord):
    """One face in one frame: where it is, what the model and the smoothing say (a JSON line on the wire)."""

    source: str  # the camera, file or folder entry the frame came from
    frame: int  # frame index within the source
    ts: float  # capture time, Unix seconds
    face: int  # index of the face within the frame, largest first
    track: int  # the tracked face this detection belongs to (stable across frames)
    box: tuple[int, int, int, int]  # x, y, width, height in frame pixels
    label: str  # smoothed label, or "uncertain" below the threshold
    raw_label: str  # this frame's top label, before smoothing
    score: float  # smoothed probability of ``label``
    raw_score: float  # this frame's probability of ``raw_label``
    probs: dict[str, float]  # smoothed probability of every label


@dataclass(frozen=True)
class FaceChange(JsonRecord):
    """A tracked face appeared, changed its smoothed label, or left (``type``)."""

    type: str  # "appeared", "changed" or "left"
    source: str
    ts: float  # when it happened (the frame's capture time)
    track: int
    label: str  # the label from now on (appeared, changed) or the last one (left)
    previous_label: str | None = None  # changed: the label before
    duration_s: float | None = None  # left: from the first to the last frame the face was seen in
    label_shares: dict[str, float] | None = None  # left: share of its frames under each smoothed label


@dataclass(frozen=True)
class Summary(JsonRecord):
    """What the camera saw over one period."""

    type: str  # always "summary"
    source: str
    start_ts: float
    end_ts: float
    frames: int
    faces: int  # distinct tracked faces seen in the period
    face_frames: int  # face detections over all frames of the period
    label_shares: dict[str, float]  # share of face detections under each smoothed label


def shares_of(counts: Counter) -> dict[str, float]:
    """Each label's share of ``counts`` (4 decimals, labels sorted); empty when there is nothing to share."""
    total = sum(counts.values())
    return {label: round(count / total, 4) for label, count in sorted(counts.items())} if total else {}
