"""How far behind the live picture a network camera's frames are, when the runtime is slower than the camera.

A stand-in network camera (an HTTP MJPEG stream served here, as many IP
cameras serve one) sends ``--camera-fps`` frames a second of the live
moment: each frame carries its number in its pixels, and while the
connection is busy the camera skips to the newest moment, as a live camera
does. A consumer takes one frame from ``edge_runtime.sources.CameraSource``
(the runtime's own source, through OpenCV's FFmpeg backend), then spends
``1 / --runtime-fps`` seconds on it, as a Pi processing 5 frames a second
would. The lag of a frame is the live frame number when it was handed out
minus its own number, in seconds. The CPU the reading costs is recorded too
(the process's, less the stand-in camera's own thread): the newest frame
costs the decoding of every frame the camera sends. Both ways of reading are measured: the
newest frame of a reader thread (``source.newest_frame``, the default) and
a read each time the consumer is ready for a frame.

    python benchmarks/stream_lag.py [--seconds 20] [--camera-fps 25] [--runtime-fps 5]

Results: ``benchmarks/results/stream_lag.json`` (docs/benchmarks.md has the table).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.sources import CameraSource  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

NUMBER_ROWS = 40  # the frame number is written in two 40-row bands: its low byte, then its high byte


class LiveMjpegCamera:
    """A stand-in network camera: an HTTP MJPEG stream of the live moment, ``fps`` frames a second, one connection
    at a time. Its frames are numbered 640x480 noise (a camera frame's size after JPEG), or ``images`` in a loop.
    While ``serving`` is False it is a camera that is gone: it drops the stream and every new connection."""

    def __init__(self, fps: float, images: list[np.ndarray] | None = None):
        self.fps = fps
        self.started = time.monotonic()
        self.cpu_seconds = 0.0  # the camera's own (encoding and sending), to tell it from the reading's
        self.serving = True
        self._jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images] if images else None
        self._server = socket.create_server(("127.0.0.1", 0))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/stream.mjpg"

    def live_number(self) -> int:
        """The number of the frame the camera is showing now."""
        return int((time.monotonic() - self.started) * self.fps)

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def __enter__(self) -> "LiveMjpegCamera":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            with connection:
                if self.serving:
                    self._stream(connection)

    def _stream(self, connection: socket.socket) -> None:
        connection.recv(65536)  # the request: any
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
        sent = -1
        while not self._closed and self.serving:
            number = self.live_number()
            if number == sent:
                time.sleep(0.002)
                continue
            cpu_started = time.thread_time()
            data = self._jpegs[number % len(self._jpegs)] if self._jpegs else numbered_jpeg(number)
            sent = number
            try:
                connection.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                                   + data + b"\r\n")
            except OSError:
                return
            finally:
                self.cpu_seconds += time.thread_time() - cpu_started


def numbered_jpeg(number: int) -> bytes:
    """A 640x480 JPEG of noise whose top-left bands hold ``number``."""
    image = np.random.default_rng(number).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image[:NUMBER_ROWS, :80] = number % 256
    image[NUMBER_ROWS:2 * NUMBER_ROWS, :80] = (number // 256) % 256
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def frame_number(image: np.ndarray) -> int:
    """The number a :func:`numbered_jpeg` frame carries (the bands' means absorb JPEG's error)."""
    low = int(round(float(image[:NUMBER_ROWS, :80].mean())))
    high = int(round(float(image[NUMBER_ROWS:2 * NUMBER_ROWS, :80].mean())))
    return low + 256 * high


def lags(camera: LiveMjpegCamera, newest_only: bool, runtime_fps: float, seconds: float) -> list[tuple[float, float]]:
    """(seconds since the first frame, lag in seconds) of each frame a consumer at ``runtime_fps`` takes (it only
    sleeps: the CPU this process spends meanwhile is the reading's, and the stand-in camera's)."""
    source = CameraSource(camera.url, newest_only=newest_only)
    frames = source.frames()
    rows, first = [], None
    try:
        for frame in frames:
            if frame is None:  # an idle tick: no frame for a while
                continue
            now = time.monotonic()
            first = now if first is None else first
            rows.append((now - first, (camera.live_number() - frame_number(frame.image)) / camera.fps))
            if now - first >= seconds:
                break
            time.sleep(1 / runtime_fps)
    finally:
        frames.close()
        source.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the consumer takes frames")
    parser.add_argument("--camera-fps", type=float, default=25.0)
    parser.add_argument("--runtime-fps", type=float, default=5.0, help="frames the consumer processes a second")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream_lag.json"))
    args = parser.parse_args()
    results = {}
    for newest_only in (True, False):
        with LiveMjpegCamera(args.camera_fps) as camera:
            cpu_started, started = time.process_time(), time.monotonic()
            rows = lags(camera, newest_only, args.runtime_fps, args.seconds)
            cpu_share = (time.process_time() - cpu_started - camera.cpu_seconds) / (time.monotonic() - started)
        name = "newest frame (the default)" if newest_only else "read when ready (newest_frame off)"
        marks = {f"lag_after_{t}s": round(next(lag for at, lag in rows if at >= t), 3)
                 for t in (1, 5, 10, 20) if t <= args.seconds}
        results[name] = {"frames": len(rows), **marks, "max_lag_s": round(max(lag for _, lag in rows), 3),
                         "reading_cpu_seconds_per_second": round(cpu_share, 3)}
        print(name, results[name])
    write_json(Path(args.out), {**provenance(), "camera_fps": args.camera_fps, "runtime_fps": args.runtime_fps,
                                "seconds": args.seconds, "results": results})


if __name__ == "__main__":
    main()
