"""The runtime's output: one event per face per processed frame, as the sinks write it."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.core.records import JsonRecord


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
