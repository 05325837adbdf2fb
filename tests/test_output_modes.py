"""output.mode on a real video: `changes` and `summary` are exactly what the per-frame face events of the same run
imply (derived here independently from those events, which the run hands its frame listeners)."""

import functools
import itertools
import threading
import time
from collections import Counter

import pytest

from edge_runtime.config import Config, with_overrides
from edge_runtime.core.faces import FaceChange, Summary
from edge_runtime.service import build_runtime
from edge_runtime.sinks import CallbackSink
from tests.conftest import MEDIA, SHIPPED_INT8, require
from tests.test_runtime_parts import FakeCapture


def run(mode: str, **overrides):
    """Run test.mp4 in ``mode``: what the sinks got, the per-frame face events of the same run, the settings, and
    each frame's clock time (``Frame.clock``)."""
    model = require(SHIPPED_INT8, "shipped int8 model")
    video = require(MEDIA / "test.mp4", "test.mp4")
    settings = with_overrides(Config(), {"model.path": str(model), "source.spec": str(video), "output.mode": mode,
                                         **overrides})
    delivered, per_frame, frame_clocks = [], [], []
    runtime = build_runtime(settings, sinks=[CallbackSink(delivered.append)])
    runtime.frame_listeners.append(lambda frame, events: (per_frame.append(list(events)),
                                                          frame_clocks.append(frame.clock)))
    runtime.run()
    return delivered, per_frame, settings, frame_clocks


def shares(labels):
    counts = Counter(labels)
    return {label: round(n / sum(counts.values()), 4) for label, n in sorted(counts.items())}


def expected_changes(per_frame, frame_clocks, max_missed_s):
    """The spec, written out: appeared on a track's first frame, changed when its label changes, left after more
    than max_missed_s seconds of frame time without it (or at the end), with duration and label shares."""
    out, seen = [], {}
    for frame_clock, events in zip(frame_clocks, per_frame, strict=True):
        for event in events:
            if event.track not in seen:
                seen[event.track] = {"first": frame_clock, "last": frame_clock, "label": event.label,
                                     "labels": [event.label], "source": event.source}
                out.append(("appeared", event.track, event.label, None))
                continue
            track = seen[event.track]
            if event.label != track["label"]:
                out.append(("changed", event.track, event.label, track["label"]))
                track["label"] = event.label
            track.update(last=frame_clock)
            track["labels"].append(event.label)
        for track_id in [t for t, track in seen.items() if frame_clock - track["last"] > max_missed_s]:
            track = seen.pop(track_id)
            out.append(("left", track_id, track["label"], round(track["last"] - track["first"], 3),
                        shares(track["labels"])))
    for track_id in list(seen):
        track = seen.pop(track_id)
        seconds = round(track["last"] - track["first"], 3)
        out.append(("left", track_id, track["label"], seconds, shares(track["labels"])))
    return out


def test_changes_mode_reports_appear_change_and_leave(tmp_path):
    delivered, per_frame, settings, frame_clocks = run("changes")
    assert all(isinstance(record, FaceChange) for record in delivered)
    got = [(c.type, c.track, c.label, c.previous_label) if c.type != "left"
           else (c.type, c.track, c.label, c.duration_s, c.label_shares) for c in delivered]
    assert got == expected_changes(per_frame, frame_clocks, settings.smoothing.max_missed_s)
    # Far fewer messages than faces: the point of the mode.
    faces = sum(len(events) for events in per_frame)
    assert faces > 100 and 2 <= len(delivered) < faces / 5
    assert delivered[0].type == "appeared" and delivered[-1].type == "left"


@pytest.mark.parametrize("period", [0.05, 1000.0])  # seconds of frame time (a file: processing time)
def test_summary_mode_reports_each_period(period):
    delivered, per_frame, _, _ = run("summary", **{"output.summary_seconds": period})
    assert all(isinstance(record, Summary) for record in delivered)
    # The same periods, from the per-frame events' timestamps (frames without a face carry none: use the
    # summaries' own boundaries, which the test checks are contiguous and cover every frame).
    assert sum(summary.frames for summary in delivered) == len(per_frame)
    assert sum(summary.face_frames for summary in delivered) == sum(len(events) for events in per_frame)
    labels = [event.label for events in per_frame for event in events]
    if period == 1000.0:  # one period holds the whole clip
        (summary,) = delivered
        assert summary.label_shares == shares(labels)
        assert summary.faces == len({event.track for events in per_frame for event in events})
    else:
        assert len(delivered) >= 2
        for earlier, later in itertools.pairwise(delivered):
            assert later.start_ts - earlier.start_ts >= period - 0.002  # start_ts is rounded to milliseconds
        counted = Counter()
        for summary in delivered:
            for label, share in summary.label_shares.items():
                counted[label] += round(share * summary.face_frames)
        assert counted == Counter(labels)


def test_frames_mode_is_every_face_in_every_frame():
    delivered, per_frame, _, _ = run("frames", **{"source.max_frames": 20})
    assert delivered == [event for events in per_frame for event in events]


def test_home_assistant_state_follows_changes_and_summaries():
    from edge_runtime.homeassistant import StateTracker

    tracker = StateTracker()
    states = [tracker.update(record) for record in (
        FaceChange("appeared", "cam", 1.0, 0, "happy"),
        FaceChange("appeared", "cam", 1.5, 1, "sad"),
        FaceChange("changed", "cam", 2.0, 1, "happy", "sad"),
        FaceChange("left", "cam", 3.0, 0, "happy", duration_s=2.0, label_shares={"happy": 1.0}),
        FaceChange("left", "cam", 4.0, 1, "happy", duration_s=2.5, label_shares={"happy": 0.5, "sad": 0.5}),
    )]
    assert [(s["emotion"], s["faces"]) for s in states] == [("happy", 1), ("happy", 2), ("happy", 2), ("happy", 1),
                                                            ("none", 0)]
    assert states[1]["shares"] == {"happy": 0.5, "sad": 0.5} and states[2]["shares"] == {"happy": 1.0}
    summary = Summary("summary", "cam", 0.0, 60.0, 1500, 2, 1400, {"happy": 0.25, "neutral": 0.75})
    assert tracker.update(summary) == {"emotion": "neutral", "faces": 2, "shares": {"happy": 0.25, "neutral": 0.75},
                                       "ts": 60.0}


class CameraLikeSource:
    """Decoded frames of test.mp4 handed out as a camera at 25 fps would stamp them, with the wall clock stepping
    back an hour at frame 60 when ``stepped`` (as NTP does to a Pi that booted with a stale clock)."""

    name = "camera-like"

    def __init__(self, images, stepped: bool):
        self.images, self.stepped = images, stepped

    def frames(self):
        from edge_runtime.sources import Frame

        for index, image in enumerate(self.images):
            clock = 5000.0 + index / 25
            wall = 1.8e9 + index / 25 - (3600.0 if self.stepped and index >= 60 else 0.0)
            yield Frame(image, self.name, index, wall, clock)

    def health(self):
        from edge_runtime.sources import SourceHealth

        return SourceHealth(True, 0, 0)

    def close(self):
        pass


@functools.cache
def first_frames_of_test_video() -> tuple:
    """The first 200 frames of test.mp4, decoded once for the tests that hand them out themselves."""
    from edge_runtime.sources import VideoFileSource

    video = require(MEDIA / "test.mp4", "test.mp4")
    return tuple(frame.image for frame in itertools.islice(VideoFileSource(video).frames(), 200))


def without_wall_times(record):
    """A record with its wall-clock times blanked: what must not depend on the wall clock."""
    from dataclasses import replace

    return replace(record, start_ts=0.0, end_ts=0.0) if isinstance(record, Summary) else replace(record, ts=0.0)


@pytest.mark.parametrize("mode", ["frames", "changes", "summary"])
def test_a_wall_clock_that_steps_back_changes_no_reading_only_the_times_records_carry(mode):
    """Smoothing, tracks, durations and periods run on the frames' clock that never steps: with the wall clock
    stepping back an hour mid-stream, every record is the same but for its wall-clock time. (Measured on the wall
    clock, the smoothed reading froze for that hour, the faces never left and no summary came.)"""
    from edge_runtime.service import load_models

    model = require(SHIPPED_INT8, "shipped int8 model")
    images = first_frames_of_test_video()
    settings = with_overrides(Config(), {"model.path": str(model), "output.mode": mode, "output.summary_seconds": 1.0,
                                         "sinks.stdout": False})
    models = load_models(settings)
    runs = {}
    for stepped in (False, True):
        delivered = []
        build_runtime(settings, sinks=[CallbackSink(delivered.append)], models=models,
                      source=CameraLikeSource(images, stepped)).run()
        runs[stepped] = delivered
    steady, stepped = runs[False], runs[True]
    assert len(steady) >= (100 if mode == "frames" else 3)
    assert {record.label for record in steady if mode != "summary"} != {None}
    assert [without_wall_times(r) for r in stepped] == [without_wall_times(r) for r in steady]
    if mode == "frames":  # the records do carry the stepped wall clock
        assert stepped[-1].ts == pytest.approx(steady[-1].ts - 3600.0)


@pytest.mark.parametrize("mode", ["changes", "summary"])
def test_while_a_camera_is_gone_its_faces_leave_and_the_summary_period_ends_on_time(mode, monkeypatch):
    """No frame comes while a camera is reopened with backoff; the loop's idle ticks still end what frames would:
    the face leaves after max_missed_s, the summary period after summary_seconds, both while the camera is down (not
    at the stop, and not when it returns)."""
    from edge_runtime import sources
    from edge_runtime.service import load_models
    from edge_runtime.sources import CameraSource

    monkeypatch.setattr(sources, "IDLE_TICK_S", 0.1)
    model = require(SHIPPED_INT8, "shipped int8 model")
    settings = with_overrides(Config(), {"model.path": str(model), "output.mode": mode, "sinks.stdout": False,
                                         "output.summary_seconds": 0.5, "smoothing.max_missed_s": 0.5})
    # Hardware boundary mocked: 10 real frames, then the camera is gone (its read fails, every reopening fails).
    opens = iter([FakeCapture(10, first_frames_of_test_video()[:10])])
    camera = CameraSource(0, opener=lambda spec: next(opens, None), newest_only=False)
    arrived = []  # (record, when it reached the sink)
    runtime = build_runtime(settings, sinks=[CallbackSink(lambda record: arrived.append((record, time.monotonic())))],
                            models=load_models(settings), source=camera)
    started = time.monotonic()
    stop = threading.Timer(1.2, runtime.stop)
    stop.start()
    runtime.run()
    before_the_stop = [record for record, at in arrived if at < started + 1.1]
    if mode == "changes":
        assert [record.type for record, _ in arrived] == ["appeared", "left"], arrived
        assert [record.type for record in before_the_stop] == ["appeared", "left"]
    else:
        (summary,) = before_the_stop
        assert summary.frames == 10 and [record for record, _ in arrived] == [summary]
