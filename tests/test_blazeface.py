"""BlazeFace: the pure steps from raw model output to frame boxes, and the bundled model on real photos."""

import cv2
import numpy as np
import pytest

from edge_runtime.core.errors import ConfigError, ModelError
from edge_runtime.detectors import DetectorOptions, find_faces, make_detector
from edge_runtime.detectors.blazeface import (
    ANCHOR_LAYOUTS,
    BUNDLED_MODEL,
    BlazeFaceOptions,
    Detection,
    Letterbox,
    decode,
    letterbox,
    make_anchors,
    to_frame_box,
    weighted_nms,
)
from tests.conftest import MEDIA, SHIPPED_INT8, require


@pytest.mark.parametrize("size, count", [(128, 896), (256, 896), (192, 2304)])
def test_anchor_layouts_match_the_models_candidate_counts(size, count):
    anchors = make_anchors(size, ANCHOR_LAYOUTS[size])
    assert anchors.shape == (count, 2)
    assert anchors.min() > 0 and anchors.max() < 1


def test_anchor_order_is_row_major_with_repeats_per_cell():
    anchors = make_anchors(128, ANCHOR_LAYOUTS[128])
    # 16x16 cells (stride 8), two anchors each, then 8x8 cells (stride 16), six anchors each.
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(anchors[517], anchors[512])
    np.testing.assert_allclose(anchors[518], [1.5 / 8, 0.5 / 8])


def test_decode_offsets_from_the_anchor_and_thresholds_the_sigmoid():
    anchors = np.array([[0.25, 0.25], [0.5, 0.5], [0.75, 0.75]], np.float32)
    regressors = np.zeros((3, 16), np.float32)
    regressors[1, :4] = [12.8, -6.4, 32.0, 64.0]   # input pixels of a 128-pixel input
    regressors[1, 4:8] = [-12.8, -12.8, 12.8, -6.4]  # the eyes, also offsets from the anchor
    logits = np.array([-3.0, 2.0, 0.1])            # sigmoid: 0.047, 0.881, 0.525
    (detection,) = decode(regressors, logits, anchors, 128, threshold=0.6)
    assert detection.score == pytest.approx(1 / (1 + np.exp(-2.0)))
    centre_x, centre_y = 0.5 + 0.1, 0.5 - 0.05
    assert detection[1:5] == pytest.approx((centre_x - 0.125, centre_y - 0.25, centre_x + 0.125, centre_y + 0.25))
    assert detection[5:] == pytest.approx((0.4, 0.4, 0.6, 0.45))
    assert len(decode(regressors, logits, anchors, 128, threshold=0.5)) == 1  # row 2 has zero size: dropped


def test_weighted_nms_blends_overlapping_candidates_and_keeps_separate_faces():
    face_a = [Detection(0.9, 0.10, 0.10, 0.30, 0.30), Detection(0.7, 0.12, 0.12, 0.32, 0.32)]
    face_b = Detection(0.8, 0.60, 0.60, 0.80, 0.80)
    merged = weighted_nms(face_a + [face_b])
    assert len(merged) == 2
    blended = merged[0]
    assert blended.score == 0.9
    assert blended.x0 == pytest.approx((0.9 * 0.10 + 0.7 * 0.12) / 1.6)
    assert merged[1] == pytest.approx(face_b)


def test_weak_candidates_join_a_face_without_moving_its_box():
    sure = Detection(0.9, 0.10, 0.10, 0.30, 0.30)
    weak = Detection(0.6, 0.14, 0.14, 0.34, 0.34)  # overlaps the face, below the box score of 0.65
    (face,) = weighted_nms([sure, weak], box_min_score=0.65)
    assert face == pytest.approx(sure)
    # A face found only by weak candidates takes its best candidate's box.
    (faint,) = weighted_nms([weak, weak._replace(score=0.55, x0=0.2)], box_min_score=0.65)
    assert faint == pytest.approx(weak)


def test_letterbox_and_frame_boxes_round_trip():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 120:160] = 255   # a white patch, 40 wide and 20 high
    square, box = letterbox(frame, 128)
    assert square.shape == (128, 128, 3) and box == Letterbox(side=200, pad_x=0, pad_y=50)
    ys, xs = np.nonzero(square[..., 0] > 127)
    detection = Detection(1.0, xs.min() / 128, ys.min() / 128, (xs.max() + 1) / 128, (ys.max() + 1) / 128)
    x, y, w, h, _, _ = to_frame_box(detection, box, scale=1.0, shift_y=0.0)
    assert abs(x - 120) <= 2 and abs(y - 40) <= 2 and abs(w - 40) <= 3 and abs(h - 20) <= 3
    # Reframing grows the box about its centre and moves it up.
    grown = to_frame_box(detection, box, scale=1.5, shift_y=-0.1)
    assert grown.w == pytest.approx(1.5 * w, abs=2) and grown.x + grown.w / 2 == pytest.approx(x + w / 2, abs=2)
    assert grown.y + grown.h / 2 == pytest.approx(y + h / 2 - 0.1 * grown.h, abs=2)


def test_bundled_model_loads_and_finds_nothing_in_a_blank_frame():
    assert BUNDLED_MODEL.is_file()
    detector = make_detector("blazeface", DetectorOptions())
    assert detector.input_size == 128 and len(detector.anchors) == 896
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8), 16) == []


def test_a_model_that_is_not_blazeface_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a BlazeFace model"):
        make_detector("blazeface", DetectorOptions(),
                      BlazeFaceOptions(model_path=str(require(SHIPPED_INT8, "shipped int8 model"))))
    with pytest.raises(ConfigError, match="model_path .*missing.tflite' does not exist; leave it empty"):
        make_detector("blazeface", DetectorOptions(), BlazeFaceOptions(model_path=str(tmp_path / "missing.tflite")))
    (tmp_path / "notes.tflite").write_text("not a model")
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        make_detector("blazeface", DetectorOptions(), BlazeFaceOptions(model_path=str(tmp_path / "notes.tflite")))


def test_blazeface_box_is_framed_like_the_haar_box():
    photo = cv2.imread(str(require(MEDIA / "justin.jpg", "justin.jpg")))
    (blaze,) = find_faces(make_detector("blazeface", DetectorOptions()), photo)
    (haar,) = find_faces(make_detector("haar", DetectorOptions()), photo)
    assert blaze.score > 0.7
    assert blaze.intersection(haar) / max(blaze.area, haar.area) > 0.6
    assert 0.8 < blaze.w / haar.w < 1.25


def test_the_default_threshold_finds_the_face_in_every_frame_of_real_footage_and_nothing_else():
    # test.mp4 holds one face in every frame. A threshold of 0.7 loses it in three frames; MediaPipe's default of 0.5
    # lets through a false candidate beside it.
    video = cv2.VideoCapture(str(require(MEDIA / "test.mp4", "test.mp4")))
    detector = make_detector("blazeface", DetectorOptions(max_faces=0))
    counts = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        counts.append(len(find_faces(detector, frame)))
    assert counts == [1] * 115


def test_blazeface_finds_a_mirrored_and_a_grayscale_face():
    photo = cv2.imread(str(require(MEDIA / "justin.jpg", "justin.jpg")))
    detector = make_detector("blazeface", DetectorOptions())
    width = photo.shape[1]
    (original,) = find_faces(detector, photo)
    (mirrored,) = find_faces(detector, cv2.flip(photo, 1))
    assert abs((width - mirrored.x - mirrored.w) - original.x) <= 0.05 * original.w
    (gray,) = find_faces(detector, cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    assert gray.intersection(original) / original.area > 0.8
