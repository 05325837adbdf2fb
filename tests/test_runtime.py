"""The edge runtime, run for real with the shipped int8 model on real photos and video."""

import json
import shutil
import textwrap

import cv2
import numpy as np
import pytest

from edge_runtime.config import Config, with_overrides
from edge_runtime.core.faces import FaceEvent
from edge_runtime.service import build_runtime
from edge_runtime.sinks import CallbackSink
from tests.conftest import MEDIA, SHIPPED_INT8, png_bomb, require, run_cli

EVENT_KEYS = {"source", "frame", "ts", "face", "track", "box", "label", "raw_label", "score", "raw_score", "probs"}
LABELS_OR_UNCERTAIN = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "uncertain"}


@pytest.fixture(scope="module")
def int8_model():
    return require(SHIPPED_INT8, "shipped int8 model (models/fer_cnn_lstm_int8.tflite)")


def run_events(model, source, **overrides):
    settings = with_overrides(Config(), {"model.path": str(model), "source.spec": str(source), **overrides})
    events = []
    runtime = build_runtime(settings, sinks=[CallbackSink(lambda event: events.append(event.to_json()))])
    stats = runtime.run()
    return events, stats, runtime


def check_schema(event):
    assert set(event) == EVENT_KEYS and FaceEvent.from_json(event).to_json() == event
    assert event["label"] in LABELS_OR_UNCERTAIN and event["raw_label"] in LABELS_OR_UNCERTAIN - {"uncertain"}
    assert len(event["box"]) == 4 and all(isinstance(v, int) for v in event["box"])
    assert set(event["probs"]) == LABELS_OR_UNCERTAIN - {"uncertain"}
    assert abs(sum(event["probs"].values()) - 1) < 0.05
    assert 0 <= event["score"] <= 1 and isinstance(event["ts"], float)


DETECTORS = ("haar", "blazeface")


@pytest.mark.parametrize("detector", DETECTORS)
def test_photo_with_one_face(int8_model, detector):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    events, stats, _ = run_events(int8_model, photo, **{"detector.name": detector})
    assert len(events) == 1 and stats.frames == 1
    check_schema(events[0])
    assert events[0]["source"] == str(photo)


@pytest.mark.parametrize("detector", DETECTORS)
def test_photo_without_faces(int8_model, detector):
    events, stats, _ = run_events(int8_model, require(MEDIA / "no-faces.jpg", "no-faces.jpg"),
                                  **{"detector.name": detector})
    assert events == [] and stats.frames == 1


@pytest.mark.parametrize("detector", DETECTORS)
def test_video_has_a_face_in_most_frames(int8_model, detector):
    events, stats, runtime = run_events(int8_model, require(MEDIA / "test.mp4", "test.mp4"),
                                        **{"detector.name": detector})
    assert stats.frames == 115
    frames_with_face = {e["frame"] for e in events}
    assert len(frames_with_face) >= 0.8 * stats.frames
    for event in events:
        check_schema(event)
    # One woman's face: smoothing keeps one dominant track through the clip.
    tracks = [e["track"] for e in events]
    assert max(tracks.count(t) for t in set(tracks)) >= 0.7 * len(frames_with_face)
    timings = runtime.timer.summary_ms()
    assert timings["inference"]["calls"] == len(events)


def test_folder_with_non_images_and_corrupt_files(int8_model, tmp_path):
    shutil.copy(require(MEDIA / "justin.jpg", "justin.jpg"), tmp_path / "a_face.jpg")
    shutil.copy(require(MEDIA / "no-faces.jpg", "no-faces.jpg"), tmp_path / "b_empty.jpg")
    (tmp_path / "c_notes.txt").write_text("not an image")
    (tmp_path / "d_broken.jpg").write_bytes((MEDIA / "justin.jpg").read_bytes()[:300])
    (tmp_path / "e_bomb.png").write_bytes(png_bomb())  # its header claims 40000x40000: over source.max_pixels
    events, stats, _ = run_events(int8_model, tmp_path)
    assert stats.frames == 2  # the text file, the truncated JPEG and the bomb are skipped with a log line
    assert [e["source"] for e in events] == [str(tmp_path / "a_face.jpg")]


def test_still_images_do_not_share_smoothing(int8_model, tmp_path):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    shutil.copy(photo, tmp_path / "1.jpg")
    flipped = cv2.flip(cv2.imread(str(photo)), 1)
    cv2.imwrite(str(tmp_path / "2.jpg"), flipped)
    events, _, _ = run_events(int8_model, tmp_path, **{"smoothing.time_constant_s": 60.0})
    assert len(events) == 2
    for event in events:  # with no carry-over, each photo's smoothed probabilities are its own raw ones
        assert event["raw_score"] == pytest.approx(max(event["probs"].values()), abs=1e-3)


def test_video_end_exits_zero_and_writes_json_lines(int8_model):
    video = require(MEDIA / "test.mp4", "test.mp4")
    result = run_cli("-m", "edge_runtime.cli", "run", "--model", str(int8_model), "--source", str(video),
                     "--max-frames", "30")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines and all(json.loads(line)["frame"] < 30 for line in lines)
    assert "processed 30 frames" in result.stderr


@pytest.mark.parametrize("detector", DETECTORS)
def test_runtime_never_imports_tensorflow(int8_model, tmp_path, detector):
    """Run the real CLI on the video with `import tensorflow` made to fail, then check sys.modules."""
    video = require(MEDIA / "test.mp4", "test.mp4")
    script = tmp_path / "no_tf.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.abc, sys
        class BlockTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow.") or name == "keras":
                    raise ImportError("tensorflow is blocked in this test")
        sys.meta_path.insert(0, BlockTensorFlow())
        sys.argv = ["edge-runtime", "run", "--model", {str(int8_model)!r}, "--source", {str(video)!r},
                    "--max-frames", "20", "--detector", {detector!r}]
        from edge_runtime.cli import app
        app(standalone_mode=False)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print("LOADED:", loaded, file=sys.stderr)
    """))
    result = run_cli(str(script))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED: []" in result.stderr
    assert len(result.stdout.strip().splitlines()) > 0


def test_truncated_video_and_missing_source(int8_model, tmp_path):
    video = require(MEDIA / "test.mp4", "test.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[:5000])
    result = run_cli("-m", "edge_runtime.cli", "run", "--model", str(int8_model), "--source", str(truncated))
    # The first 5 kB of an MP4 hold no index (moov atom): OpenCV cannot open it, and the runtime says so.
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot open video" in result.stderr and "truncated" in result.stderr
    missing = tmp_path / "nope.mp4"
    result = run_cli("-m", "edge_runtime.cli", "run", "--model", str(int8_model), "--source", str(missing))
    assert result.returncode == 2 and "source" in result.stderr and "not found" in result.stderr


def test_annotation_only_when_asked(int8_model, tmp_path):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    run_events(int8_model, photo)
    assert list(tmp_path.iterdir()) == []
    run_events(int8_model, photo, **{"output.annotate": str(tmp_path / "out")})
    written = list((tmp_path / "out").iterdir())
    assert len(written) == 1 and cv2.imread(str(written[0])).shape == cv2.imread(str(photo)).shape


def test_a_failing_sink_is_logged_once_per_streak_and_counted(int8_model, caplog):
    """A sink that fails for a while, then works: one ERROR for the streak, one WARNING when it recovers."""
    video = require(MEDIA / "test.mp4", "test.mp4")
    delivered, calls = [], [0]

    def flaky(event):  # the 4th to the 23rd event fail
        calls[0] += 1
        if 4 <= calls[0] <= 23:
            raise ConnectionError("broker went away")
        delivered.append(event)

    settings = with_overrides(Config(), {"model.path": str(int8_model), "source.spec": str(video),
                                         "source.max_frames": 40})
    runtime = build_runtime(settings, sinks=[CallbackSink(flaky, name="flaky")])
    with caplog.at_level("WARNING"):
        stats = runtime.run()
    assert stats.sink_failures == {"flaky": 20} and len(delivered) == stats.events - 20 > 3
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "sink flaky" in r.getMessage()]
    assert errors == ["sink flaky failed: ConnectionError: broker went away (further failures are counted in "
                      "the metric sink_failed_events_total until it works again)"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "flaky" in r.getMessage()] == [
        "sink flaky works again after 20 failed events"]


def _faces_classified(model, image, **overrides) -> list:
    """The 48x48 faces the runtime hands its classifier for one photo (the classifier is real; it is only
    watched)."""
    from edge_runtime.sources import Frame

    runtime = build_runtime(with_overrides(Config(), {"model.path": str(model), **overrides}),
                            source=object())  # frames are handed to process() directly; the source is never read
    seen = []
    classify = runtime.classifier.probabilities
    runtime.classifier.probabilities = lambda face: (seen.append(face.copy()), classify(face))[1]
    runtime.process(Frame(image, "photo", 0, 0.0, 0.0, still=True))
    return seen


def test_blurred_faces_are_restored_before_classifying_and_sharp_ones_are_not(int8_model):
    from edge_runtime.core.preprocessing import restore_blur, sharpness

    photo = cv2.imread(str(require(MEDIA / "justin.jpg", "the face photo media/justin.jpg")))
    # The face is about 200 px wide: a blur of 6 px is sigma 1.4 at the model's 48 px.
    for image, restored in ((photo, False), (cv2.GaussianBlur(photo, (0, 0), 6.0), True)):
        plain = _faces_classified(int8_model, image, **{"detector.restore_blur": False})
        chosen = _faces_classified(int8_model, image)
        assert len(plain) == len(chosen) == 1
        np.testing.assert_array_equal(chosen[0], restore_blur(plain[0]))
        assert (sharpness(chosen[0]) > sharpness(plain[0])) == restored
