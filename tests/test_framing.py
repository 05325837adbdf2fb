"""The keypoint framing: features seen level, the fit and its inverse, the bounds, the bundled file."""

import json
import math

import cv2
import numpy as np
import pytest

from edge_runtime.core.errors import ModelError
from edge_runtime.detectors import DetectorOptions, find_faces, make_detector
from edge_runtime.detectors.blazeface import BlazeFaceOptions, Detection, Letterbox, to_frame_box
from edge_runtime.detectors.framing import (
    BUNDLED_FRAMING,
    FEATURES,
    Framing,
    FramingModel,
    features,
    fit_framing,
    load_framing,
    targets,
)
from tests.conftest import MEDIA, require

# A level face's keypoints relative to its box centre, in box widths: eyes, nose, mouth, ears.
LEVEL_FACE = np.array([[-0.22, -0.1], [0.22, -0.1], [0.0, 0.05], [0.0, 0.2], [-0.45, 0.0], [0.45, 0.0]])


def turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """``points`` turned by ``degrees`` about the origin, in image axes (y down): positive lowers the image's right."""
    radians = math.radians(degrees)
    return points @ np.array([[math.cos(radians), math.sin(radians)], [-math.sin(radians), math.cos(radians)]])


def face(level_keypoints: np.ndarray, roll: float, centre=(0.5, 0.45), width=0.3, score=0.9) -> Detection:
    """A detection whose keypoints are ``level_keypoints`` turned by ``roll`` degrees about its box centre."""
    points = turned(level_keypoints, roll) * width + centre
    half_w, half_h = width / 2, width * 0.55
    return Detection(score, centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h,
                     *points.ravel())


def true_framing(detection: Detection, level_keypoints: np.ndarray, roll: float) -> Framing:
    """A framing that is a known function of the level keypoints (what the regression must learn), placed in image
    axes by the face's roll."""
    width = detection.x1 - detection.x0
    side = 1.1 + 2.0 * level_keypoints[3, 1]
    offset = turned(np.array([[0.5 * level_keypoints[2, 0], -0.1 + 0.3 * level_keypoints[3, 1]]]), roll)[0] * width
    return Framing((detection.x0 + detection.x1) / 2 + offset[0], (detection.y0 + detection.y1) / 2 + offset[1],
                   side * width)


def sample(rng: np.random.Generator, spread: float) -> tuple[Detection, Framing]:
    level = LEVEL_FACE + rng.normal(0, 0.03 * spread, LEVEL_FACE.shape)
    level[1, 1] = level[0, 1]  # eyes level, so the roll the eyes give is the roll the face was turned by
    roll = float(rng.uniform(-25, 25) * spread)
    detection = face(level, roll, score=float(rng.uniform(0.6, 1.0)))
    return detection, true_framing(detection, level, roll)


def test_features_do_not_change_when_the_face_rolls_inside_its_box():
    level = features(face(LEVEL_FACE, 0.0))
    assert level.shape == (len(FEATURES),)
    np.testing.assert_allclose(level[:6], LEVEL_FACE[:, 0], atol=1e-12)
    for roll in (-30.0, 12.0, 40.0):
        np.testing.assert_allclose(features(face(LEVEL_FACE, roll)), level, atol=1e-12)


def test_a_face_whose_eyes_are_not_plausible_keeps_the_fixed_framing():
    swapped = LEVEL_FACE.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # the eyes on the wrong sides
    for implausible in (face(swapped, 0.0), face(LEVEL_FACE * 0.3, 0.0), face(LEVEL_FACE, 60.0)):
        assert features(implausible) is None and load_framing().framing(implausible) is None
        box = Letterbox(side=640, pad_x=0, pad_y=80)
        assert to_frame_box(implausible, box, framing=load_framing()) == to_frame_box(implausible, box)


def test_a_fitted_framing_recovers_a_known_framing_at_any_roll():
    rng = np.random.default_rng(0)
    pairs = [sample(rng, 1.0) for _ in range(400)]
    rows = np.array([features(d) for d, _ in pairs])
    known = np.array([targets(d, f) for d, f in pairs])
    model = fit_framing(rows, known, ridge=1e-6, bounds_percentile=0.0)
    for detection, truth in (sample(rng, 0.8) for _ in range(20)):
        predicted = model.framing(detection)
        assert predicted.centre_x == pytest.approx(truth.centre_x, abs=1e-4)
        assert predicted.centre_y == pytest.approx(truth.centre_y, abs=1e-4)
        assert predicted.side == pytest.approx(truth.side, abs=1e-4)


def test_a_prediction_is_held_to_the_fitted_bounds_and_the_box_is_square():
    width = len(FEATURES) + len(FEATURES) * (len(FEATURES) + 1) // 2 + 1
    weights = np.zeros((width, 3))
    weights[-1] = [10.0, 1.0, -1.0]  # a side of 10 box widths, far off-centre
    model = FramingModel(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), weights, (1.0, 1.5), 0.2)
    detection = face(LEVEL_FACE, 0.0)
    framing = model.framing(detection)
    assert framing.side == pytest.approx(1.5 * 0.3)
    assert framing.centre_x == pytest.approx(0.5 + 0.2 * 0.3) and framing.centre_y == pytest.approx(0.45 - 0.2 * 0.3)
    box = to_frame_box(detection, Letterbox(side=1000, pad_x=0, pad_y=0), framing=model)
    assert (box.w, box.h) == (450, 450) and (box.x + box.w / 2, box.y + box.h / 2) == pytest.approx((560, 390), abs=1)


def test_the_bundled_framing_loads_and_a_damaged_one_is_refused(tmp_path):
    model = load_framing()
    # FER2013's side against BlazeFace's own box width (the fixed framing grows that box 1.18 times).
    assert model.weights.shape[1] == 3 and 0.6 < model.side_range[0] < 1.18 < model.side_range[1] < 2.5
    raw = json.loads(BUNDLED_FRAMING.read_text())
    (tmp_path / "cut.json").write_text(BUNDLED_FRAMING.read_text()[:500])
    with pytest.raises(ModelError, match="cannot read the framing model .*framing = \"fixed\""):
        load_framing(tmp_path / "cut.json")
    (tmp_path / "older.json").write_text(json.dumps({**raw, "features": raw["features"][:-1],
                                                     "mean": raw["mean"][:-1]}))
    with pytest.raises(ModelError, match="does not match this version's features"):
        load_framing(tmp_path / "older.json")
    (tmp_path / "huge.json").write_bytes(b" " * 1_000_001)
    with pytest.raises(ModelError, match="is not a framing model"):
        load_framing(tmp_path / "huge.json")


def test_keypoint_framing_on_a_real_face_is_square_and_near_the_fixed_box():
    photo = cv2.imread(str(require(MEDIA / "justin.jpg", "justin.jpg")))
    (fixed,) = find_faces(make_detector("blazeface", DetectorOptions(), BlazeFaceOptions(framing="fixed")), photo)
    (keypoints,) = find_faces(make_detector("blazeface", DetectorOptions(), BlazeFaceOptions(framing="keypoints")),
                              photo)
    assert keypoints.w == keypoints.h and keypoints.eyes == fixed.eyes
    assert keypoints.intersection(fixed) / max(keypoints.area, fixed.area) > 0.6
    assert keypoints != fixed
