"""Annotated output: a video that plays at real speed, cut into a bounded number of files for a source that never
ends, and a failure that never stops the runtime. Frames are synthetic, written and read back by real OpenCV."""

import logging
import re

import cv2
import numpy as np
import pytest

from edge_runtime.annotate import Annotator
from edge_runtime.config import Config, config_from_dict, preflight, with_overrides
from edge_runtime.core.errors import ConfigError
from edge_runtime.service import annotator_from_config, build_runtime
from tests.conftest import MEDIA, SHIPPED_INT8, require

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def grey(level: int) -> np.ndarray:
    return np.full((64, 96, 3), level, np.uint8)


def feed(annotator: Annotator, times: list[float], levels: list[int] | None = None) -> None:
    """One frame per clock time (each a flat grey, so the video can be read back frame by frame), then close."""
    for number, clock in enumerate(times):
        level = levels[number] if levels else 128
        annotator.write(grey(level), [], False, "camera", timestamp=WALL + clock, clock=clock)
    annotator.close()


def read_levels(path, fps: float) -> list[int]:
    """The mean grey level of each frame of the video at ``path``, which must run at ``fps``."""
    video, levels = cv2.VideoCapture(str(path)), []
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, abs=0.01)
    while True:
        ok, frame = video.read()
        if not ok:
            return levels
        levels.append(int(round(frame.mean())))


def assert_levels(levels: list[int], expected: list[int]) -> None:
    assert len(levels) == len(expected) and all(abs(level - wanted) <= 3
                                                for level, wanted in zip(levels, expected, strict=True)), levels


def test_a_camera_is_written_at_its_own_rate_each_frame_for_as_long_as_it_was_shown(tmp_path):
    target = tmp_path / "slow.mp4"
    # 5 frames a second, then a frame 0.4 s late: the one before it is shown for as long.
    feed(Annotator(str(target)), [0.0, 0.2, 0.4, 0.6, 1.0], [20, 80, 140, 200, 250])
    assert_levels(read_levels(target, 5.0), [20, 80, 140, 200, 200, 250])


def test_a_burst_is_thinned_and_a_pause_is_jumped_over(tmp_path):
    burst = tmp_path / "burst.mp4"
    # 10 frames a second, then 60 a second for 0.5 s: the video stays at 10 and plays 0.8 s.
    feed(Annotator(str(burst)), [0.0, 0.1, 0.2, 0.3] + [0.3 + k / 60 for k in range(1, 31)])
    assert len(read_levels(burst, 10.0)) == 9
    paused = tmp_path / "paused.mp4"
    feed(Annotator(str(paused)), [0.0, 0.2, 0.4, 0.6, 30.6], [20, 80, 140, 200, 250])  # a camera gone for 30 s
    assert_levels(read_levels(paused, 5.0), [20, 80, 140, 200, 250])


def test_an_endless_source_is_cut_into_files_and_only_the_newest_stay(tmp_path, caplog):
    unrelated = [tmp_path / "camera.mp4", tmp_path / "camera-notes.txt", tmp_path / "other-20270115T080000Z.mp4"]
    for path in unrelated:
        path.write_text("not ours")
    with caplog.at_level(logging.INFO, logger="edge_runtime.annotate"):
        feed(Annotator(str(tmp_path / "camera.mp4"), segment_s=1.0, keep=2), [i / 10 for i in range(46)])
    said = [record.getMessage() for record in caplog.records]
    assert sum("annotated video: " in line for line in said) == 5 and sum("deleted" in line for line in said) == 3
    segments = sorted(p.name for p in tmp_path.iterdir() if p not in unrelated)
    # Five files were begun (0, 1, 2, 3 and 4 s in), named by the UTC time of their first frame; two stay.
    assert segments == ["camera-20270115T080003Z.mp4", "camera-20270115T080004Z.mp4"]
    assert [len(read_levels(tmp_path / name, 10.0)) for name in segments] == [10, 6]  # complete, readable files
    assert all(path.read_text() == "not ours" for path in unrelated)


def test_segments_of_the_same_second_do_not_overwrite_each_other(tmp_path):
    feed(Annotator(str(tmp_path / "cam.mp4"), segment_s=0.09, keep=0), [i / 30 for i in range(10)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and all(re.fullmatch(r"cam-20270115T080000Z(-\d)?\.mp4", name) for name in names)


def test_a_target_that_cannot_be_written_is_logged_once_and_never_stops_the_runtime(caplog):
    annotator = Annotator("/proc/fer-edge/cam.mp4", segment_s=60.0, keep=2)
    with caplog.at_level(logging.ERROR, logger="edge_runtime.annotate"):
        feed(annotator, [0.0, 0.1, 0.2])
    assert len(caplog.records) == 1 and "/proc/fer-edge/cam.mp4" in caplog.records[0].getMessage()


def test_only_a_source_that_never_ends_has_its_video_cut(tmp_path):
    video = require(MEDIA / "test.mp4", "test.mp4")
    base = with_overrides(Config(), {"output.annotate": str(tmp_path / "out.mp4")})
    for spec, loop, segmented in (("0", False, True), ("rtsp://camera/stream", False, True), (str(video), True, True),
                                  (str(video), False, False), (str(MEDIA), True, False)):
        annotator = annotator_from_config(with_overrides(base, {"source.spec": spec, "source.loop": loop}))
        assert (annotator.segment_s, annotator.keep) == ((600.0, 12) if segmented else (0.0, 0)), spec
    assert annotator_from_config(Config()) is None


def test_a_camera_with_a_folder_for_stills_is_refused(tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    raw = {"model": {"path": str(model)}, "source": {"spec": "0"}, "output": {"annotate": str(tmp_path / "shots")}}
    with pytest.raises(ConfigError, match=r"output\.annotate: .*shots' has no suffix.* give a video path"):
        preflight(config_from_dict(raw))


def test_the_runtime_writes_a_clip_at_its_own_speed(tmp_path):
    """test.mp4 (115 frames, 0.04 s apart in media time) through the runtime: its annotated copy has every frame, at
    25 frames a second."""
    video, model = require(MEDIA / "test.mp4", "test.mp4"), require(SHIPPED_INT8, "shipped int8 model")
    target = tmp_path / "annotated.mp4"
    config = with_overrides(Config(), {"model.path": str(model), "source.spec": str(video),
                                       "output.annotate": str(target)})
    build_runtime(config).run()
    assert len(read_levels(target, 25.0)) == 115
