"""Where FER2013 would have framed a face, predicted from BlazeFace's box and its six keypoints.

The emotion model learnt each face at the framing FER2013 gave it, and that
framing varies from face to face: against the fixed box (BlazeFace's, grown), FER2013's side
spans 0.81-1.20 (p10-p90). A detector that frames every face alike hands
the model some faces tighter and some looser than it learnt them, and that
costs accuracy end to end (docs/benchmarks.md, "What the box costs").

The keypoints tell part of that framing apart: where the eyes, nose, mouth
and ears sit inside BlazeFace's box, seen level (the face's roll undone),
predicts about two thirds of the variance of FER2013's side. With
``detector.blazeface.framing = "keypoints"`` the box is placed by a small
ridge regression, quadratic in those positions and the detection's score,
fitted on Training faces placed in frames
(``benchmarks/framing_fit.py``, which writes the bundled
``blazeface_framing.json``). Everything here is pure NumPy on
:class:`~edge_runtime.detectors.blazeface.Detection`-like values in the
model's normalized input coordinates, where a letterboxed frame keeps its
proportions; nothing here depends on where the coordinates came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_runtime.core.errors import ModelError

BUNDLED_FRAMING = Path(__file__).with_name("blazeface_framing.json")
# The keypoints BlazeFace gives, in its output order (the person's right eye is on the image's left).
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
# BlazeFace's boxes are square, so the box adds only its score.
FEATURES = (*(f"{name}_x" for name in KEYPOINTS), *(f"{name}_y" for name in KEYPOINTS), "score")
TARGETS = ("side", "offset_x", "offset_y")
# Eyes closer or further apart than this share of the box width are a failed landmark (a frontal face's are about
# 0.45 of BlazeFace's own box); such a face keeps the fixed framing, as does a roll beyond MAX_ROLL_DEGREES.
PLAUSIBLE_EYE_DISTANCE = (0.25, 0.75)
MAX_ROLL_DEGREES = 45.0
# A framing file is a few kilobytes; anything far larger is not one.
MAX_FILE_BYTES = 1_000_000


class Keypointed(Protocol):
    """A detection in normalized input coordinates with BlazeFace's six keypoints (what ``framing`` reads)."""

    score: float
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def keypoints(self) -> np.ndarray:
        """``(6, 2)``: x, y of each of :data:`KEYPOINTS`."""
        ...


@dataclass(frozen=True)
class Framing:
    """A square crop: its centre and side, in the detection's normalized coordinates."""

    centre_x: float
    centre_y: float
    side: float


def roll_radians(detection: Keypointed) -> float | None:
    """The face's roll from its eyes, or None when the eyes are not plausible for the box."""
    (right_x, right_y), (left_x, left_y) = detection.keypoints[:2]
    width = detection.x1 - detection.x0
    dx, dy = left_x - right_x, left_y - right_y
    low, high = PLAUSIBLE_EYE_DISTANCE
    if width <= 0 or dx <= 0 or not low * width <= math.hypot(dx, dy) <= high * width:
        return None
    roll = math.atan2(dy, dx)
    return roll if abs(math.degrees(roll)) <= MAX_ROLL_DEGREES else None


def _turn(points: np.ndarray, radians: float) -> np.ndarray:
    """``points`` (N, 2) turned by ``radians`` about the origin (positive: as the image's y axis points down)."""
    cos, sin = math.cos(radians), math.sin(radians)
    return points @ np.array([[cos, sin], [-sin, cos]])


def features(detection: Keypointed) -> np.ndarray | None:
    """The keypoints relative to the box centre in box widths, seen level, then the detection's score
    (:data:`FEATURES`); None when the eyes are not plausible."""
    roll = roll_radians(detection)
    if roll is None:
        return None
    width = detection.x1 - detection.x0
    centre = np.array([(detection.x0 + detection.x1) / 2, (detection.y0 + detection.y1) / 2])
    level = _turn((detection.keypoints - centre) / width, -roll)
    return np.concatenate([level[:, 0], level[:, 1], [detection.score]])


def targets(detection: Keypointed, framing: Framing) -> np.ndarray | None:
    """What the regression predicts for a known ``framing`` of the detection's face: its side in box widths and its
    centre's offset from the box centre in box widths, seen level (:data:`TARGETS`)."""
    roll = roll_radians(detection)
    if roll is None:
        return None
    width = detection.x1 - detection.x0
    offset = np.array([[framing.centre_x - (detection.x0 + detection.x1) / 2,
                        framing.centre_y - (detection.y0 + detection.y1) / 2]]) / width
    return np.concatenate([[framing.side / width], _turn(offset, -roll)[0]])


def _expanded(standard: np.ndarray) -> np.ndarray:
    """Standardized features (N, F), their pairwise products (squares included) and a constant."""
    first, second = np.triu_indices(standard.shape[1])
    return np.hstack([standard, standard[:, first] * standard[:, second], np.ones((len(standard), 1))])


@dataclass(frozen=True, eq=False)
class FramingModel:
    """The fitted regression: feature standardization, weights (one column per target) and the bounds a prediction
    is held to (the range of the framings it was fitted on)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    side_range: tuple[float, float]
    max_offset: float

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Targets (N, 3) for feature rows (N, F), unbounded (for scoring the fit)."""
        return _expanded((np.atleast_2d(rows) - self.mean) / self.scale) @ self.weights

    def framing(self, detection: Keypointed) -> Framing | None:
        """The predicted FER2013 framing of ``detection``, held to the fitted bounds; None when its eyes are not
        plausible (the caller keeps its fixed framing)."""
        row = features(detection)
        if row is None:
            return None
        side, *offset = self.predict(row)[0]
        side = float(np.clip(side, *self.side_range))
        offset_x, offset_y = np.clip(offset, -self.max_offset, self.max_offset)
        width = detection.x1 - detection.x0
        turned = _turn(np.array([[offset_x, offset_y]]), roll_radians(detection))[0] * width
        return Framing((detection.x0 + detection.x1) / 2 + float(turned[0]),
                       (detection.y0 + detection.y1) / 2 + float(turned[1]), side * width)

    def to_json(self) -> dict:
        """The model as the JSON that :func:`load_framing` reads."""
        return {"features": list(FEATURES), "targets": list(TARGETS), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "weights": self.weights.tolist(), "side_range": list(self.side_range),
                "max_offset": self.max_offset}


def fit_framing(rows: np.ndarray, known: np.ndarray, ridge: float, bounds_percentile: float = 0.5) -> FramingModel:
    """Ridge regression of ``known`` targets (N, 3) on feature ``rows`` (N, F); a prediction is later held to the
    targets' ``bounds_percentile``..``100 - bounds_percentile`` range."""
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + 1e-9
    design = _expanded((rows - mean) / scale)
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the constant is not shrunk
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ known)
    low, high = np.percentile(known[:, 0], [bounds_percentile, 100 - bounds_percentile])
    reach = float(np.percentile(np.abs(known[:, 1:]), 100 - bounds_percentile))
    return FramingModel(mean, scale, weights, (float(low), float(high)), reach)


def load_framing(path: Path = BUNDLED_FRAMING) -> FramingModel:
    """The framing model in ``path`` (the bundled one by default), checked against the features this code computes."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ModelError(f"{path}: {path.stat().st_size} bytes is not a framing model (at most {MAX_FILE_BYTES})")
        raw = json.loads(path.read_text())
        model = FramingModel(np.array(raw["mean"], float), np.array(raw["scale"], float),
                             np.array(raw["weights"], float), tuple(raw["side_range"]), float(raw["max_offset"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"cannot read the framing model {path}: {error}; reinstall fer-edge or set "
                         "detector.blazeface.framing = \"fixed\"") from error
    expected = (len(FEATURES),) * 2 + (_expanded(np.zeros((1, len(FEATURES)))).shape[1], len(TARGETS))
    found = (len(model.mean), len(model.scale), *model.weights.shape)
    if raw.get("features") != list(FEATURES) or found != expected:
        raise ModelError(f"the framing model {path} does not match this version's features ({found} against "
                         f"{expected}); refit it with benchmarks/framing_fit.py or set detector.blazeface.framing = "
                         "\"fixed\"")
    return model
