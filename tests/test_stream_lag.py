"""A network camera read by the runtime's own source through OpenCV's FFmpeg backend (no mock: a stand-in MJPEG
camera over HTTP on localhost, from benchmarks/stream_lag.py) stays live when the runtime is slower than the camera."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("stream_lag", ROOT / "benchmarks" / "stream_lag.py")
stream_lag = importlib.util.module_from_spec(_spec)
sys.modules["stream_lag"] = stream_lag
_spec.loader.exec_module(stream_lag)


@pytest.mark.slow
def test_a_runtime_slower_than_a_network_camera_stays_on_the_live_picture():
    """A consumer at 5 frames a second on a 25 fps stream: the newest frame stays within a few frames of live, while
    a read on each request falls 0.8 s further behind every second (the check that the stand-in shows the lag)."""
    with stream_lag.LiveMjpegCamera(25.0) as camera:
        newest = stream_lag.lags(camera, newest_only=True, runtime_fps=5.0, seconds=3.0)
    with stream_lag.LiveMjpegCamera(25.0) as camera:
        on_request = stream_lag.lags(camera, newest_only=False, runtime_fps=5.0, seconds=3.0)
    assert len(newest) >= 10 and max(lag for _, lag in newest) <= 0.3, newest
    assert on_request[-1][1] >= 1.5, on_request
