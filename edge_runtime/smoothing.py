"""A steady reading per face: tracks that survive missed detections, and a state that changes only when the face does.

Everything here runs on the frame's own clock (media time for a video file,
capture time for a camera), never on frame counts, so the same settings behave
the same at 5 frames a second on a Pi and at 300 on a desktop.

Per tracked face:

- **Averaging.** The class probabilities are averaged exponentially with time
  constant ``time_constant_s``: a frame ``dt`` seconds after the previous one
  gets the weight ``1 - exp(-dt / time_constant_s)``.
- **Hysteresis.** The face's *state* (the label it reports) changes only when
  another label has led the current one by at least ``margin`` in the averaged
  probabilities, continuously for ``dwell_s``.
- **Abstention.** The state becomes ``uncertain`` only after the averaged top
  probability has stayed below ``threshold`` for ``uncertain_after_s``; one
  unsure frame is never reported. A face leaves ``uncertain`` the same way a
  label is entered: a label above the threshold for ``dwell_s``.
- **Tracking.** Detections are matched to tracks by box overlap with where
  each track is predicted to be (its last box moved at its recent velocity), so
  two faces that cross keep their ids. A track with no detection keeps its
  state for ``max_missed_s`` and is then dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from edge_runtime.core.faces import Box
from edge_runtime.core.records import setting

UNCERTAIN = "uncertain"
# How far back the start of a new lead may be dated: half the frame interval at 5 fps (see FaceState.update).
MAX_BACKDATE_S = 0.1
# How much of a new velocity estimate enters a track's velocity: detections jitter, so one frame must not swing it.
VELOCITY_GAIN = 0.5
# Slack in comparing a duration with a setting. Frame times are a start time (the wall clock, about 1.8e9 s) plus
# media time, where a double resolves only about 2.4e-7 s: a dwell that ends exactly on a frame (0.3 s at 25 fps)
# would otherwise be reached on that frame in one run and on the next in another, depending on the start.
CLOCK_SLACK_S = 1e-3


def lasted(elapsed_s: float, needed_s: float) -> bool:
    """Whether ``elapsed_s`` reaches ``needed_s``, to within the clock's rounding (``CLOCK_SLACK_S``)."""
    return elapsed_s >= needed_s - CLOCK_SLACK_S


class Smoothed(NamedTuple):
    """A face's steady reading: track id, state (a label or ``uncertain``), its averaged score and probabilities."""

    track_id: int
    label: str
    score: float
    probabilities: np.ndarray


@dataclass(frozen=True)
class SmoothingOptions:
    """``[smoothing]``: how a face's state follows its probabilities (all times in the frame's own seconds)."""

    time_constant_s: float = setting(
        0.3, "time constant of the probability average: larger is steadier, smaller follows faster", minimum=0.01,
        maximum=60.0)
    dwell_s: float = setting(
        0.3, "another label must lead the state for this long before the state changes (longer = steadier, "
        "later)", minimum=0.0, maximum=60.0)
    margin: float = setting(
        0.1, "... and lead it by at least this much averaged probability", minimum=0.0, maximum=1.0)
    threshold: float = setting(
        0.4, "an averaged top probability below this is low confidence", minimum=0.0, maximum=1.0)
    uncertain_after_s: float = setting(
        1.5, "the state becomes 'uncertain' after low confidence for this long (never for a blip)", minimum=0.0,
        maximum=600.0)
    min_iou: float = setting(
        0.3, "box overlap with a track's predicted box that makes a detection that face", minimum=0.0, maximum=1.0)
    max_missed_s: float = setting(
        1.0, "a face keeps its track and state this long without a detection, then it has left", minimum=0.0,
        maximum=600.0)


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


def average_weight(dt: float, time_constant_s: float) -> float:
    """The weight of a frame ``dt`` seconds after the previous one in an exponential average of time constant tau."""
    return 1.0 - math.exp(-max(dt, 0.0) / time_constant_s)


@dataclass
class FaceState:
    """One face's reading over time: averaged probabilities and a state with hysteresis (no tracking here)."""

    labels: tuple[str, ...]
    options: SmoothingOptions
    probabilities: np.ndarray
    last_ts: float
    state: str = UNCERTAIN
    candidate: str | None = None  # the label (or UNCERTAIN) that is challenging the state
    candidate_since: float = 0.0

    @classmethod
    def start(cls, labels: tuple[str, ...], options: SmoothingOptions, probabilities: np.ndarray,
              ts: float) -> "FaceState":
        """A new face: its first frame's top label is its state (``uncertain`` below the threshold)."""
        face = cls(labels, options, probabilities.astype(np.float32).copy(), ts)
        face.state = decide(face.probabilities, labels, options.threshold)[0]
        return face

    def update(self, probabilities: np.ndarray, ts: float) -> None:
        """Fold in one frame's probabilities at time ``ts`` and move the state if a challenger has held long enough."""
        weight = average_weight(ts - self.last_ts, self.options.time_constant_s)
        self.probabilities = self.probabilities + weight * (probabilities - self.probabilities)
        previous_ts, self.last_ts = self.last_ts, max(self.last_ts, ts)
        challenger = self._challenger()
        if challenger is None or challenger != self.candidate:
            # The lead began somewhere between the previous frame and this one: halfway, on average. (Counting from
            # this frame would add half a frame interval to every change: 0.1 s at 5 fps, nothing at 300.) After a
            # gap in detections that guess means nothing, so it reaches back no further than at a Pi's 5 fps.
            self.candidate = challenger
            self.candidate_since = ts - min((ts - previous_ts) / 2, MAX_BACKDATE_S)
        if challenger is not None:
            needed = self.options.uncertain_after_s if challenger == UNCERTAIN else self.options.dwell_s
            if lasted(ts - self.candidate_since, needed):
                self.state, self.candidate = challenger, None

    def _challenger(self) -> str | None:
        """The state the averaged probabilities argue for now, when it is not the current one."""
        top = int(np.argmax(self.probabilities))
        lead = float(self.probabilities[top])
        if lead < self.options.threshold:
            return UNCERTAIN if self.state != UNCERTAIN else None
        leader = self.labels[top]
        if leader == self.state:
            return None
        if self.state == UNCERTAIN:
            return leader
        current = float(self.probabilities[self.labels.index(self.state)])
        return leader if lead - current >= self.options.margin else None

    @property
    def score(self) -> float:
        """The averaged probability of the state (of the top label while ``uncertain``)."""
        if self.state == UNCERTAIN:
            return float(self.probabilities.max())
        return float(self.probabilities[self.labels.index(self.state)])


@dataclass
class _Track:
    track_id: int
    box: Box
    face: FaceState
    last_seen: float
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per second

    def predicted(self, ts: float) -> Box:
        """Where the track's box should be at ``ts`` if the face keeps moving as it did."""
        dt = max(0.0, ts - self.last_seen)
        return self.box._replace(x=int(round(self.box.x + self.velocity[0] * dt)),
                                 y=int(round(self.box.y + self.velocity[1] * dt)))

    def move_to(self, box: Box, ts: float) -> None:
        dt = ts - self.last_seen
        if dt > 0:
            vx = (box.x + box.w / 2 - self.box.x - self.box.w / 2) / dt
            vy = (box.y + box.h / 2 - self.box.y - self.box.h / 2) / dt
            self.velocity = (self.velocity[0] + VELOCITY_GAIN * (vx - self.velocity[0]),
                             self.velocity[1] + VELOCITY_GAIN * (vy - self.velocity[1]))
        self.box, self.last_seen = box, max(self.last_seen, ts)


@dataclass
class FaceSmoother:
    """Tracks faces between frames and keeps each one's steady state (see the module docstring)."""

    labels: tuple[str, ...]
    options: SmoothingOptions = SmoothingOptions()
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0

    def reset(self) -> None:
        """Forget every track (a new still image, or a source restart)."""
        self._tracks.clear()

    @property
    def track_ids(self) -> list[int]:
        """The ids of the faces tracked now, including those briefly out of sight."""
        return [track.track_id for track in self._tracks]

    def update(self, boxes: list[Box], probabilities: list[np.ndarray], ts: float) -> list[Smoothed]:
        """Steady readings for the faces detected at time ``ts``, in the order given."""
        assignment = self._match(boxes, ts)
        results = []
        for index, (box, probs) in enumerate(zip(boxes, probabilities, strict=True)):
            if index in assignment:
                track = self._tracks[assignment[index]]
                track.face.update(probs, ts)
                track.move_to(box, ts)
            else:
                track = _Track(self._next_id, box, FaceState.start(self.labels, self.options, probs, ts), ts)
                self._next_id += 1
                self._tracks.append(track)
            face = track.face
            results.append(Smoothed(track.track_id, face.state, face.score, face.probabilities))
        self.expire(ts)
        return results

    def expire(self, ts: float) -> None:
        """Forget the faces not seen for more than ``max_missed_s`` at time ``ts`` (also with no frame at all)."""
        self._tracks = [t for t in self._tracks if ts - t.last_seen <= self.options.max_missed_s + CLOCK_SLACK_S]

    def _match(self, boxes: list[Box], ts: float) -> dict[int, int]:
        """Detection index -> track index, greedily by the best overlaps with each track's predicted box."""
        predicted = [track.predicted(ts) for track in self._tracks]
        pairs = sorted(((iou(box, guess), i, t) for i, box in enumerate(boxes) for t, guess in enumerate(predicted)),
                       reverse=True)
        assignment: dict[int, int] = {}
        taken: set[int] = set()
        for overlap, face, track in pairs:
            if overlap < self.options.min_iou:
                break
            if face not in assignment and track not in taken:
                assignment[face] = track
                taken.add(track)
        return assignment
