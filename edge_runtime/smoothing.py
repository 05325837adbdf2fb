"""Temporal smoothing of per-face probabilities, and abstention when the model is unsure.

Faces are matched across frames by box overlap (IoU); each tracked face keeps
an exponential moving average of its class probabilities, so a label does not
flicker with every frame. The smoothed top class is reported only when its
probability reaches the threshold; otherwise the label is ``uncertain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from edge_runtime.detectors import Box

UNCERTAIN = "uncertain"


class Smoothed(NamedTuple):
    """A face's smoothed result: its track id, label (or ``uncertain``), score and probabilities."""

    track_id: int
    label: str
    score: float
    probabilities: np.ndarray


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    intersection = a.intersection(b)
    union = a.area + b.area - intersection
    return intersection / union if union > 0 else 0.0


def decide(probabilities: np.ndarray, labels: tuple[str, ...], threshold: float) -> tuple[str, float]:
    """The top label and its probability, or ``uncertain`` when that probability is below ``threshold``."""
    top = int(np.argmax(probabilities))
    score = float(probabilities[top])
    return (labels[top] if score >= threshold else UNCERTAIN), score


@dataclass
class _Track:
    track_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0


@dataclass
class FaceSmoother:
    """Tracks faces between frames and smooths their probabilities.

    ``alpha`` is the weight of the newest frame (1.0 = no smoothing);
    ``min_iou`` the overlap needed to call two boxes the same face;
    ``max_missed`` how many frames a face may vanish before its track is dropped.
    """

    labels: tuple[str, ...]
    alpha: float = 0.4
    threshold: float = 0.4
    min_iou: float = 0.3
    max_missed: int = 5
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0

    def reset(self) -> None:
        """Forget every track (a new still image, or a source restart)."""
        self._tracks.clear()

    def update(self, boxes: list[Box], probabilities: list[np.ndarray]) -> list[Smoothed]:
        """Smoothed results for this frame's faces, in the order given."""
        unmatched = set(range(len(self._tracks)))
        results = []
        # Greedy matching, best overlaps first: faces rarely cross each other between consecutive frames.
        pairs = sorted(((iou(box, self._tracks[t].box), i, t) for i, box in enumerate(boxes)
                        for t in range(len(self._tracks))), reverse=True)
        assignment: dict[int, int] = {}
        for overlap, face, track in pairs:
            if overlap < self.min_iou:
                break
            if face not in assignment and track in unmatched:
                assignment[face] = track
                unmatched.discard(track)
        for face, (box, probs) in enumerate(zip(boxes, probabilities)):
            if face in assignment:
                track = self._tracks[assignment[face]]
                track.probabilities = self.alpha * probs + (1 - self.alpha) * track.probabilities
                track.box, track.missed = box, 0
            else:
                track = _Track(self._next_id, box, probs.astype(np.float32).copy())
                self._next_id += 1
                self._tracks.append(track)
            label, score = decide(track.probabilities, self.labels, self.threshold)
            results.append(Smoothed(track.track_id, label, score, track.probabilities))
        for index in unmatched:
            self._tracks[index].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return results
