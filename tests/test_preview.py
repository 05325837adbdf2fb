"""The live view: off by default, free while nobody watches, each face's bars and state strip, and a real browser
sees the picture move."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edge_runtime.annotate import draw_events
from edge_runtime.core.faces import FaceEvent
from edge_runtime.core.labels import LABELS
from edge_runtime.preview import FaceReadings, Preview
from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, plain_photo, require, wait_for


def test_nothing_is_encoded_while_nobody_watches():
    preview = Preview("m.tflite", draw_events)
    frame = np.zeros((48, 64, 3), np.uint8)
    preview.offer(frame, [], 0.0)
    assert preview.jpeg is None and preview.frame_id == 0  # no viewer: not even a JPEG encode


def test_one_shared_frame_for_every_viewer():
    preview = Preview("m.tflite", draw_events)
    preview.min_interval = 0.0  # no rate limit for this test
    preview.viewers = 2  # as if two browsers were connected
    for shade in (10, 200):
        preview.offer(np.full((48, 64, 3), shade, np.uint8), [], float(shade))
    decoded = cv2.imdecode(np.frombuffer(preview.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert preview.frame_id == 2 and abs(int(decoded.mean()) - 200) < 3  # only the newest frame is held


def test_a_new_viewer_gets_a_fresh_picture_not_the_one_held_from_an_earlier_viewer():
    preview = Preview("m.tflite", draw_events)
    preview.min_interval = 0.0
    preview.viewers = 1  # an earlier viewer, who saw a dark frame and left
    preview.offer(np.full((48, 64, 3), 10, np.uint8), [], 0.0)
    preview.viewers = 0
    shades = []

    def viewer_writes(part: bytes):
        jpeg = part[part.index(b"\r\n\r\n") + 4: -2]
        shades.append(int(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).mean()))
        raise ConnectionError  # the viewer leaves after one picture

    def watch():
        with contextlib.suppress(ConnectionError):
            preview.stream(viewer_writes)

    viewer = threading.Thread(target=watch)
    viewer.start()
    assert wait_for(lambda: preview.viewers == 1, 5)
    preview.offer(np.full((48, 64, 3), 200, np.uint8), [], 1.0)  # the first frame after it came
    viewer.join(5)
    assert len(shades) == 1 and abs(shades[0] - 200) < 3, shades  # hours-old dark picture not shown


def _event(track: int, label: str, ts: float) -> FaceEvent:
    probs = {name: (0.7 if name == label else 0.05) for name in LABELS}
    return FaceEvent("cam", 0, ts, 0, track, (0, 0, 10, 10), label, label, 0.7, 0.7, probs)


def test_face_readings_keep_each_faces_bars_and_last_minute_of_state():
    readings = FaceReadings(history_s=60.0, shown_s=2.0)
    script = [(0.0, "neutral"), (30.0, "happy"), (50.0, "happy"), (70.0, "sad"), (95.0, "sad")]
    for clock, label in script:
        # The events carry wall-clock times, which step back an hour at 60 s; the strip runs on the frames' clock.
        wall = 1.8e9 + clock - (3600.0 if clock >= 60 else 0.0)
        readings.record([_event(1, label, wall)] + ([_event(2, "angry", wall)] if clock < 60 else []), clock)
    page = json.loads(readings.as_json())
    assert page["now"] == 95.0 and page["history_s"] == 60.0 and set(page["colours"]) >= set(LABELS)
    (face,) = page["faces"]  # face 2 was last seen at 50 s: out of view
    assert face["track"] == 1 and face["state"] == "sad" and face["probs"]["sad"] == 0.7
    # The stretch that covers the window's start (happy from 30 s) stays; the neutral one before it has gone.
    assert face["history"] == [[30.0, "happy"], [70.0, "sad"]]
    readings.record([], 200.0)
    assert json.loads(readings.as_json())["faces"] == []


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _screenshot(url: str, path, wait_ms: int, profile) -> np.ndarray:
    subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={profile}", "--window-size=1100,600", f"--timeout={wait_ms}",
                    f"--screenshot={path}", url], capture_output=True, timeout=60)
    image = cv2.imread(str(path))
    assert image is not None, "chromium wrote no screenshot"
    return image


@pytest.mark.slow
def test_a_browser_sees_the_live_view_update(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (CI installs it from Debian)")
    model = require(SHIPPED_INT8, "shipped int8 model")
    video = require(MEDIA / "test.mp4", "test.mp4")
    port = _port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    service = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--model", str(model), "--source",
                                str(video), "--loop", "--http", f"127.0.0.1:{port}", "--preview",
                                "--no-stdout"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert 'src="/stream.mjpg"' in page and "fer_cnn_lstm_int8.tflite" in page
        time.sleep(1.0)
        readings = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/faces.json", timeout=2).read())
        assert readings["faces"] and set(readings["faces"][0]["probs"]) == set(LABELS)
        assert readings["faces"][0]["history"][0][1] in readings["colours"]
        url = f"http://127.0.0.1:{port}/"
        first = _screenshot(url, tmp_path / "first.png", 2500, tmp_path / "profile1")
        second = _screenshot(url, tmp_path / "second.png", 4500, tmp_path / "profile2")
        # The stream sits at the page's left (see docs/deploy.md for a screenshot): a real picture, and a moving one.
        left_first, left_second = first[80:420, 16:614].astype(int), second[80:420, 16:614].astype(int)
        assert left_first.std() > 20 and left_second.std() > 20, "the stream area is blank"
        assert np.abs(left_first - left_second).mean() > 2, "the picture did not change between the screenshots"
        # The side panel polls /healthz; the browser drew it (a lighter text area right of the picture).
        assert (first[100:360, 630:900] > 120).any()
    finally:
        service.terminate()
        service.wait(20)
    assert service.returncode == 0


def test_preview_is_off_by_default_and_needs_a_listener(tmp_path):
    from edge_runtime.config import Config, config_from_dict, preflight
    from edge_runtime.core.errors import ConfigError

    assert Config().http.preview is False
    model = require(SHIPPED_INT8, "shipped int8 model")
    with pytest.raises(ConfigError, match="http.preview: the live view needs http.listen"):
        preflight(config_from_dict({"model": {"path": str(model)}, "source": {"spec": str(plain_photo())},
                                    "http": {"preview": True}}))
