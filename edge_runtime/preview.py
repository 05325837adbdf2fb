"""The live view: what the camera sees, with the boxes and steady states, as MJPEG in a browser; and per face, its
probabilities as bars and the last minute of its state as a strip (``/faces.json``, drawn by the page).

Off unless ``http.preview = true``, and served only on the HTTP listener the user configured (127.0.0.1 by default).
Nothing is written to disk. The runtime hands every processed frame to :meth:`Preview.offer`, which returns at once
while nobody watches; with viewers, it encodes at most ``max_fps`` frames a second into one shared JPEG (the only
frame the preview holds), and each viewer's connection sends the newest one when it is ready for it.
"""

from __future__ import annotations

import functools
import html
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

BOUNDARY = "fer-edge-frame"
STREAM_CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"  # what /stream.mjpg serves
HISTORY_S = 60.0  # how much of each face's state the strip shows
# One colour per state for the strip and the bars (the page reads them from /faces.json).
STATE_COLOURS = {"angry": "#d9534f", "disgust": "#8e6c3a", "fear": "#9b59b6", "happy": "#f0ad4e", "sad": "#428bca",
                 "surprise": "#5bc0de", "neutral": "#999999", "uncertain": "#444444"}

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fer-edge live view</title>
<style>body{font-family:system-ui,sans-serif;margin:1em;background:#111;color:#eee}
#view{display:flex;gap:1.5em;align-items:flex-start}img{max-width:70vw;border:1px solid #444}
dt{color:#9ab}dd{margin:0 0 .6em 0;font-size:1.2em}#readings{display:flex;gap:2em;flex-wrap:wrap}
.face{width:22em}.face h2{font-size:1.1em}.bar{display:flex;align-items:center;gap:.5em;height:1.2em}
.bar span{width:5em}.bar i{display:block;height:.9em}.strip{position:relative;height:1.2em;background:#222;
margin-top:.5em}.strip i{position:absolute;top:0;bottom:0}</style></head><body>
<h1>fer-edge live view</h1><div id="view"><img id="stream" src="/stream.mjpg" alt="live view">
<dl><dt>model</dt><dd id="model">{model}</dd><dt>status</dt><dd id="status">-</dd>
<dt>frames per second</dt><dd id="fps">-</dd><dt>frames</dt><dd id="frames">-</dd><dt>faces now</dt>
<dd id="faces">-</dd></dl></div><div id="readings"></div>
<script>
function face(reading, colours, now, span) {
  const box = document.createElement('div'); box.className = 'face';
  const title = document.createElement('h2');
  title.textContent = `face ${reading.track}: ${reading.state} ${reading.score.toFixed(2)}`;
  box.appendChild(title);
  for (const [label, p] of Object.entries(reading.probs)) {
    const row = document.createElement('div'); row.className = 'bar';
    const name = document.createElement('span'); name.textContent = label;
    const bar = document.createElement('i');
    bar.style.width = `${(p * 100).toFixed(1)}%`; bar.style.background = colours[label] ?? '#777';
    row.append(name, bar); box.appendChild(row);
  }
  const strip = document.createElement('div'); strip.className = 'strip';
  reading.history.forEach(([start, state], i) => {
    const end = i + 1 < reading.history.length ? reading.history[i + 1][0] : now;
    const piece = document.createElement('i');
    piece.style.left = `${Math.max(0, 100 * (1 - (now - start) / span))}%`;
    piece.style.width = `${100 * (end - Math.max(start, now - span)) / span}%`;
    piece.style.background = colours[state]; piece.title = state;
    strip.appendChild(piece);
  });
  box.appendChild(strip);
  return box;
}
async function refresh() {
  try {
    const health = await (await fetch('/healthz')).json();
    document.getElementById('status').textContent = health.status;
    document.getElementById('frames').textContent = health.frames;
    document.getElementById('fps').textContent = (health.fps ?? 0).toFixed(1);
    document.getElementById('faces').textContent = health.faces_in_view ?? '-';
    const readings = await (await fetch('/faces.json')).json();
    const target = document.getElementById('readings');
    target.replaceChildren(...readings.faces.map(r => face(r, readings.colours, readings.now, readings.history_s)));
  } catch (error) { document.getElementById('status').textContent = 'unreachable'; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


@dataclass
class _Reading:
    state: str
    score: float
    probs: dict[str, float]
    last_seen: float  # clock time (see edge_runtime.sources.Frame)
    history: deque = field(default_factory=deque)  # (clock time it began, state) of each stretch, oldest first


class FaceReadings:
    """Each face's latest probabilities and the stretches of its state over the last :data:`HISTORY_S` seconds.

    Fed with every frame's events (a dict update per face; the history grows only when a state changes), so the
    strip is whole the moment someone opens the page.
    """

    def __init__(self, history_s: float = HISTORY_S, shown_s: float = 2.0):
        self.history_s, self.shown_s = history_s, shown_s
        self.now = 0.0
        self._faces: dict[int, _Reading] = {}
        self._lock = threading.Lock()

    def record(self, events, now: float) -> None:
        """Fold in one frame's events, taken at ``now`` on the frame's clock that never steps (``Frame.clock``; the
        events' own ``ts`` is wall-clock time)."""
        with self._lock:
            self.now = now
            for event in events:
                reading = self._faces.get(event.track)
                if reading is None:
                    reading = self._faces[event.track] = _Reading(event.label, event.score, event.probs, now)
                if not reading.history or reading.history[-1][1] != event.label:
                    reading.history.append((now, event.label))
                reading.state, reading.score, reading.probs, reading.last_seen = (event.label, event.score,
                                                                                  event.probs, now)
            for track in [t for t, r in self._faces.items() if now - r.last_seen > self.history_s]:
                del self._faces[track]
            for reading in self._faces.values():  # keep the stretch that covers the window's start
                while len(reading.history) > 1 and reading.history[1][0] <= now - self.history_s:
                    reading.history.popleft()

    def as_json(self) -> bytes:
        """The faces in view (seen within ``shown_s``), with the strip's stretches, for the page."""
        with self._lock:
            faces = [{"track": track, "state": r.state, "score": r.score, "probs": r.probs,
                      "history": [list(stretch) for stretch in r.history]}
                     for track, r in sorted(self._faces.items()) if self.now - r.last_seen <= self.shown_s]
            return json.dumps({"now": self.now, "history_s": self.history_s, "colours": STATE_COLOURS,
                               "faces": faces}).encode()


class Preview:
    """Shares the newest annotated frame, JPEG-encoded, with the browsers that watch."""

    content_type = STREAM_CONTENT_TYPE  # of :meth:`stream`'s output

    def __init__(self, model_name: str, draw: Callable[[np.ndarray, list], np.ndarray], max_fps: float = 10.0,
                 quality: int = 80):
        self.model_name = model_name
        self.draw = draw  # boxes and labels on a copy of the frame (edge_runtime.annotate.draw_events)
        self.min_interval = 1.0 / max_fps
        self.quality = quality
        self.viewers = 0
        self.frame_id = 0
        self.jpeg: bytes | None = None
        self._last = 0.0
        self._changed = threading.Condition()
        self._closed = False
        self.readings = FaceReadings()

    def page(self) -> bytes:
        return PAGE.replace("{model}", html.escape(self.model_name)).encode()

    def offer(self, image, events, clock: float) -> None:
        """Called for every processed frame (``clock``: its ``Frame.clock``): keeps the faces' readings; encodes only
        while someone watches, and at most ``max_fps`` times a second."""
        self.readings.record(events, clock)
        if not self.viewers:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        ok, encoded = cv2.imencode(".jpg", self.draw(image, events), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._changed:
                self.jpeg, self.frame_id = encoded.tobytes(), self.frame_id + 1
                self._changed.notify_all()

    def stream(self, write) -> None:
        """Write the MJPEG stream to one viewer, from the first frame encoded after it came, until it goes away
        (``write`` raises) or the preview closes."""
        with self._changed:
            self.viewers += 1
            # Not the picture held from before: nothing is encoded while nobody watches, so it may be hours old.
            sent = self.frame_id
        try:
            while not self._closed:
                with self._changed:
                    self._changed.wait_for(functools.partial(self._news_since, sent), timeout=1.0)
                    if self._closed or self.frame_id == sent:
                        continue
                    jpeg, sent = self.jpeg, self.frame_id
                write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                      + jpeg + b"\r\n")
        finally:
            with self._changed:
                self.viewers -= 1

    def _news_since(self, sent: int) -> bool:
        """Whether a frame newer than ``sent`` is ready, or the preview closed (the viewer's wait ends on either)."""
        return self.frame_id != sent or self._closed

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
