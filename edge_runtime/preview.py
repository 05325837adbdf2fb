"""The live view: what the camera sees, with the boxes, smoothed labels and scores, as MJPEG in a browser.

Off unless ``http.preview = true``, and served only on the HTTP listener the user configured (127.0.0.1 by default).
Nothing is written to disk. The runtime hands every processed frame to :meth:`Preview.offer`, which returns at once
while nobody watches; with viewers, it encodes at most ``max_fps`` frames a second into one shared JPEG (the only
frame the preview holds), and each viewer's connection sends the newest one when it is ready for it.
"""

from __future__ import annotations

import html
import threading
import time

import cv2

from edge_runtime.pipeline import draw_events

BOUNDARY = "fer-edge-frame"

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fer-edge live view</title>
<style>body{font-family:system-ui,sans-serif;margin:1em;background:#111;color:#eee}
#view{display:flex;gap:1.5em;align-items:flex-start}img{max-width:70vw;border:1px solid #444}
dt{color:#9ab}dd{margin:0 0 .6em 0;font-size:1.2em}</style></head><body>
<h1>fer-edge live view</h1><div id="view"><img id="stream" src="/stream.mjpg" alt="live view">
<dl><dt>model</dt><dd id="model">{model}</dd><dt>status</dt><dd id="status">-</dd>
<dt>frames per second</dt><dd id="fps">-</dd><dt>frames</dt><dd id="frames">-</dd><dt>faces now</dt>
<dd id="faces">-</dd></dl></div>
<script>
async function refresh() {
  try {
    const health = await (await fetch('/healthz')).json();
    document.getElementById('status').textContent = health.status;
    document.getElementById('frames').textContent = health.frames;
    document.getElementById('fps').textContent = (health.fps ?? 0).toFixed(1);
    document.getElementById('faces').textContent = health.faces_in_view ?? '-';
  } catch (error) { document.getElementById('status').textContent = 'unreachable'; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


class Preview:
    """Shares the newest annotated frame, JPEG-encoded, with the browsers that watch."""

    def __init__(self, model_name: str, max_fps: float = 10.0, quality: int = 80):
        self.model_name = model_name
        self.min_interval = 1.0 / max_fps
        self.quality = quality
        self.viewers = 0
        self.frame_id = 0
        self.jpeg: bytes | None = None
        self._last = 0.0
        self._changed = threading.Condition()
        self._closed = False

    def page(self) -> bytes:
        return PAGE.replace("{model}", html.escape(self.model_name)).encode()

    def offer(self, image, events) -> None:
        """Called for every processed frame: free while nobody watches, rate-limited while someone does."""
        if not self.viewers:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        ok, encoded = cv2.imencode(".jpg", draw_events(image, events), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._changed:
                self.jpeg, self.frame_id = encoded.tobytes(), self.frame_id + 1
                self._changed.notify_all()

    def stream(self, write) -> None:
        """Write the MJPEG stream to one viewer until it goes away (``write`` raises) or the preview closes."""
        with self._changed:
            self.viewers += 1
        try:
            sent = 0
            while not self._closed:
                with self._changed:
                    self._changed.wait_for(lambda: self.frame_id != sent or self._closed, timeout=1.0)
                    if self._closed or self.frame_id == sent:
                        continue
                    jpeg, sent = self.jpeg, self.frame_id
                write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                      + jpeg + b"\r\n")
        finally:
            with self._changed:
                self.viewers -= 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
