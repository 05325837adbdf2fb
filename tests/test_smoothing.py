"""The steady reading on synthetic timestamps: time-based averaging, hysteresis, abstention, tracking, media time,
and levelling faces by their eyes (a synthetic bar, and a real photo rotated by 20 degrees)."""

import itertools
import math
import time

import cv2
import numpy as np
import pytest

from edge_runtime.config import config_from_dict
from edge_runtime.core.errors import ConfigError
from edge_runtime.core.labels import LABELS
from edge_runtime.detectors import Box, DetectorOptions, Eyes, face_crop, find_faces, make_detector
from edge_runtime.detectors.base import roll_degrees
from edge_runtime.smoothing import UNCERTAIN, FaceSmoother, FaceState, SmoothingOptions, average_weight, iou
from edge_runtime.sources import MediaClock, VideoFileSource
from tests.conftest import MEDIA, require

HAPPY, SAD, NEUTRAL = LABELS.index("happy"), LABELS.index("sad"), LABELS.index("neutral")


def peaked(index, peak=0.7):
    probabilities = np.full(7, (1 - peak) / 6, np.float32)
    probabilities[index] = peak
    return probabilities


def flat():
    return np.full(7, 1 / 7, np.float32)


def play(face: FaceState, script, fps: float, start: float = 0.0) -> list[tuple[float, str]]:
    """Feed ``script`` (a list of ``(seconds, probabilities)``) at ``fps``; the state after every frame."""
    states, ts = [], start
    for seconds, probabilities in script:
        for _ in range(int(round(seconds * fps))):
            ts += 1 / fps
            face.update(probabilities, ts)
            states.append((ts, face.state))
    return states


def change_time(states, label):
    return next(ts for ts, state in states if state == label)


def test_average_weight_depends_on_time_not_frames():
    # One 0.2 s step weighs what six 1/30 s steps weigh together.
    assert 1 - (1 - average_weight(1 / 30, 0.5)) ** 6 == pytest.approx(average_weight(0.2, 0.5))
    assert average_weight(0.0, 0.5) == 0.0 and average_weight(100, 0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("fps", [5, 30, 300])
def test_a_sustained_change_lands_at_the_same_time_at_any_frame_rate(fps):
    options = SmoothingOptions()
    face = FaceState.start(LABELS, options, peaked(HAPPY), 0.0)
    states = play(face, [(2.0, peaked(HAPPY)), (3.0, peaked(SAD))], fps)
    changed = change_time(states, "sad") - 2.0
    # The average needs a while to favour sad by the margin, then sad must lead for dwell_s (counted from halfway
    # between the frame before the lead and the first frame of it).
    assert options.dwell_s - 0.5 / fps <= changed <= options.dwell_s + options.time_constant_s + 0.25
    assert [state for _, state in states].count("sad") > 0 and states[-1][1] == "sad"


@pytest.mark.parametrize("fps", [5, 30, 300])
def test_blips_shorter_than_the_dwell_never_change_the_state(fps):
    face = FaceState.start(LABELS, SmoothingOptions(), peaked(HAPPY), 0.0)
    script = [(1.0, peaked(HAPPY)), (0.2, peaked(SAD, 0.9)), (1.0, peaked(HAPPY)), (0.2, flat()),
              (1.0, peaked(HAPPY))]
    assert {state for _, state in play(face, script, fps)} == {"happy"}


@pytest.mark.parametrize("start", [0.0, 1796519986.763, 1796519987.602, 1e9 + 0.001])
def test_a_change_lands_on_the_same_frame_whatever_the_clock_reads_at_the_start(start):
    # A file's frame times are the wall clock at its start plus media time. At 25 fps a dwell of 0.3 s ends exactly
    # on a frame (the lead dated 0.02 s back, then seven frames of 0.04 s), where float rounding at an epoch-sized
    # start would otherwise put the change on that frame in one run and on the next frame in another.
    face = FaceState.start(LABELS, SmoothingOptions(dwell_s=0.3), peaked(HAPPY), start)
    frames = [peaked(HAPPY)] * 25 + [peaked(SAD, 0.95)] * 25
    candidates, states = [], []
    for index, probabilities in enumerate(frames, start=1):
        face.update(probabilities, start + index * 40 / 1000)
        candidates.append(face.candidate)
        states.append(face.state)
    lead_begins, changes = candidates.index("sad"), states.index("sad")
    assert changes - lead_begins == 7


def test_a_challenger_must_lead_by_the_margin():
    options = SmoothingOptions(margin=0.2)
    face = FaceState.start(LABELS, options, peaked(HAPPY, 0.45), 0.0)
    close_call = np.full(7, 0.016, np.float32)
    close_call[SAD], close_call[HAPPY] = 0.5, 0.42  # sad leads, but by less than the margin
    assert {state for _, state in play(face, [(5.0, close_call)], 30)} == {"happy"}
    assert play(face, [(5.0, peaked(SAD))], 30, start=5.0)[-1][1] == "sad"


def test_uncertain_only_after_sustained_low_confidence_and_left_like_a_label():
    options = SmoothingOptions(uncertain_after_s=1.0)
    face = FaceState.start(LABELS, options, peaked(HAPPY), 0.0)
    states = play(face, [(1.0, peaked(HAPPY)), (0.6, flat()), (1.0, peaked(HAPPY))], 30)
    assert UNCERTAIN not in {state for _, state in states}  # 0.6 s unsure is a blip
    states = play(face, [(3.0, flat())], 30, start=2.6)
    entered = change_time(states, UNCERTAIN) - 2.6
    assert options.uncertain_after_s <= entered <= options.uncertain_after_s + options.time_constant_s + 0.2
    assert play(face, [(2.0, peaked(NEUTRAL))], 30, start=5.6)[-1][1] == "neutral"


def test_a_first_unsure_frame_starts_uncertain():
    assert FaceState.start(LABELS, SmoothingOptions(), flat(), 0.0).state == UNCERTAIN


def test_a_track_keeps_its_id_and_state_through_missed_detections_then_expires_by_time():
    smoother = FaceSmoother(LABELS, SmoothingOptions(max_missed_s=1.0))
    box = Box(100, 100, 80, 80)
    for step in range(10):
        (first,) = smoother.update([box], [peaked(HAPPY)], step / 10)
    assert first.label == "happy"
    for step in range(5):  # half a second without a detection
        assert smoother.update([], [], 1.0 + step / 10) == []
    (back,) = smoother.update([box._replace(x=104)], [peaked(SAD)], 1.5)
    assert back.track_id == first.track_id and back.label == "happy"  # the same face, its state kept
    smoother.update([], [], 2.0)
    assert smoother.track_ids == [first.track_id]
    smoother.update([], [], 2.6)  # more than max_missed_s since the last detection at 1.5
    assert smoother.track_ids == []
    (new,) = smoother.update([box], [peaked(HAPPY)], 2.7)
    assert new.track_id != first.track_id


def test_two_faces_that_cross_keep_their_ids():
    smoother = FaceSmoother(LABELS, SmoothingOptions())
    ids_by_direction: dict[str, set[int]] = {"rightwards": set(), "leftwards": set()}
    for step in range(31):
        ts = step / 10
        rightwards, leftwards = Box(40 + 12 * step, 100, 80, 80), Box(400 - 12 * step, 110, 80, 80)
        # Detectors list faces largest first, not by identity: the order flips halfway.
        boxes = [rightwards, leftwards] if step % 2 else [leftwards, rightwards]
        results = smoother.update(boxes, [peaked(HAPPY), peaked(SAD)] if step % 2 else [peaked(SAD), peaked(HAPPY)],
                                  ts)
        by_box = dict(zip(boxes, results, strict=True))
        ids_by_direction["rightwards"].add(by_box[rightwards].track_id)
        ids_by_direction["leftwards"].add(by_box[leftwards].track_id)
    assert len(ids_by_direction["rightwards"]) == 1 and len(ids_by_direction["leftwards"]) == 1
    assert ids_by_direction["rightwards"] != ids_by_direction["leftwards"]
    assert iou(Box(0, 0, 40, 40), Box(0, 0, 40, 40)) == 1.0 and iou(Box(0, 0, 40, 40), Box(200, 0, 40, 40)) == 0.0


def test_the_old_per_frame_keys_are_refused_with_their_replacement():
    with pytest.raises(ConfigError, match="smoothing.alpha was replaced by smoothing.time_constant_s"):
        config_from_dict({"smoothing": {"alpha": 0.4}})
    with pytest.raises(ConfigError, match="smoothing.max_missed was replaced by smoothing.max_missed_s"):
        config_from_dict({"smoothing": {"max_missed": 5}})


def test_media_clock_stamps_file_time_and_paces_only_when_asked():
    now = [1000.0]
    waits = []
    clock = MediaClock(25.0, realtime=False, wait=waits.append, now=lambda: now[0])
    stamps = [clock.stamp(ms) for ms in (0.0, 40.0, 80.0)]
    assert stamps == pytest.approx([1000.0, 1000.04, 1000.08])
    assert clock.stamp(80.0) == pytest.approx(1000.12)  # a repeated time still moves the clock one frame on
    clock.rewind()
    assert clock.stamp(0.0) == pytest.approx(1000.16)  # a looped file continues after its last frame
    clock.pace(1000.5)
    assert waits == []
    paced = MediaClock(25.0, realtime=True, wait=waits.append, now=lambda: now[0])
    paced.pace(paced.stamp(40.0))
    assert waits == [pytest.approx(0.04)]


def test_realtime_plays_a_video_file_at_its_own_rate_with_the_same_frame_times():
    video = require(MEDIA / "test.mp4", "test.mp4")
    started = time.monotonic()
    paced = list(itertools.islice(VideoFileSource(video, realtime=True).frames(), 13))
    elapsed = time.monotonic() - started
    fast = list(itertools.islice(VideoFileSource(video).frames(), 13))
    span = paced[-1].clock - paced[0].clock
    assert span == pytest.approx(12 / 24.7, abs=0.03)  # media time: the file's own 24.7 frames a second
    assert elapsed >= span - 0.02
    assert [f.clock - fast[0].clock for f in fast] == pytest.approx([f.clock - paced[0].clock for f in paced])
    # The wall-clock times the records carry keep the same spacing (to the float resolution of an epoch time).
    assert [f.timestamp - paced[0].timestamp for f in paced] == pytest.approx(
        [f.clock - paced[0].clock for f in paced], abs=1e-5)


def test_levelling_turns_the_crop_by_the_roll_about_the_box_centre():
    frame = np.zeros((300, 300), np.uint8)
    cv2.line(frame, (100, 150), (200, 150), 255, 3)  # a level bar through the centre...
    tilted = cv2.warpAffine(frame, cv2.getRotationMatrix2D((150, 150), -20, 1.0), (300, 300))  # ...tilted by 20 degrees
    angle = math.radians(20)
    eyes = Eyes(150 - 25 * math.cos(angle), 150 - 25 * math.sin(angle), 150 + 25 * math.cos(angle),
                150 + 25 * math.sin(angle))
    box = Box(100, 100, 100, 100, 1.0, eyes)
    assert roll_degrees(box) == pytest.approx(20)
    crop = face_crop(tilted, box, 0.1, align=True)
    assert crop.shape == (120, 120)
    rows = np.flatnonzero(crop[:, 20:100].max(axis=1) > 128)
    assert rows.max() - rows.min() <= 5  # the bar is level again
    straight = face_crop(tilted, box, 0.1, align=False)
    rows = np.flatnonzero(straight[:, 20:100].max(axis=1) > 128)
    assert rows.max() - rows.min() > 20


def test_implausible_eyes_are_not_used():
    box = Box(100, 100, 100, 100, 1.0, Eyes(130, 140, 133, 140))  # 3 px apart on a 100 px face: a bad landmark
    assert roll_degrees(box) is None
    assert roll_degrees(box._replace(eyes=Eyes(170, 140, 130, 140))) is None  # swapped eyes
    assert roll_degrees(box._replace(eyes=Eyes(130, 140, 150, 180))) is None  # a 63-degree roll
    assert roll_degrees(box._replace(eyes=Eyes(130, 140, 167, 140))) == 0.0
    assert roll_degrees(box._replace(eyes=None)) is None
    frame = np.zeros((400, 400, 3), np.uint8)
    assert face_crop(frame, box, 0.1, align=True).shape == (120, 120, 3)
    assert face_crop(frame, Box(500, 500, 50, 50, 1.0, Eyes(510, 520, 530, 530)), 0.1, align=True) is None


def test_a_rotated_face_in_a_real_photo_comes_out_level():
    photo = cv2.imread(str(require(MEDIA / "justin.jpg", "justin.jpg")))
    detector = make_detector("blazeface", DetectorOptions(detect_width=0))
    height, width = photo.shape[:2]
    rotated = cv2.warpAffine(photo, cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0), (width, height),
                             borderMode=cv2.BORDER_REPLICATE)
    (box,) = find_faces(detector, rotated)
    eyes = box.eyes
    assert abs(math.degrees(math.atan2(eyes.right_y - eyes.left_y, eyes.right_x - eyes.left_x))) > 12
    crop = face_crop(rotated, box, 0.1, align=True)
    framed = cv2.copyMakeBorder(crop, 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    (again,) = find_faces(detector, framed)
    level = again.eyes
    assert abs(math.degrees(math.atan2(level.right_y - level.left_y, level.right_x - level.left_x))) < 6
