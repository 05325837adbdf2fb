"""Boxes and labels drawn on a frame: for annotated output files (:class:`Annotator`) and the live view."""

from __future__ import annotations

import itertools
import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.core.faces import FaceEvent

log = logging.getLogger(__name__)

# Annotated video is written at the source's own rate, measured as the median interval between its first frames
# (this many, or those of its first second), and held to this range.
RATE_SAMPLE_FRAMES = 4
RATE_SAMPLE_S = 1.0
VIDEO_FPS_RANGE = (1.0, 60.0)
# A longer pause between two frames (a camera being reopened) is not filled with copies of the last frame: the video
# jumps over it.
MAX_FILLED_GAP_S = 1.0


def draw_events(image: np.ndarray, events: list[FaceEvent]) -> np.ndarray:
    """A BGR copy of ``image`` with each face's box, smoothed label and score drawn on it."""
    image = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for event in events:
        x, y, w, h = event.box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(image, f"{event.label} {event.score:.2f}", (x, max(12, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
    return image


class Annotator:
    """Draws boxes and labels and writes them to a video (moving sources) or image files (stills).

    Only created when the user asks for it: by default no frame or crop is ever written. With ``segment_s`` (a
    source that never ends: a camera, a stream, a looped file), the video is cut into files of that many seconds,
    named ``<stem>-<UTC time of the first frame><suffix>`` beside ``target``, and only the newest ``keep`` of them
    stay (0 = all): each is complete once the next begins, so a killed process loses at most the last one, and the
    disk holds a bounded amount. Without it, the one video is ``target`` itself. A file that cannot be written is
    logged, and never stops the runtime.
    """

    def __init__(self, target: str, segment_s: float = 0.0, keep: int = 0):
        self.target = Path(target)
        self.segment_s, self.keep = segment_s, keep
        self.writer: cv2.VideoWriter | None = None
        self.fps: float | None = None  # the video's frame rate, once measured
        self._sample: list[tuple[np.ndarray, float, float]] = []  # frames held back while the rate is measured
        self._written = 0  # frames in the current video
        self._video_start = 0.0  # the clock at the current video's first frame
        self._size: tuple[int, int] = (0, 0)  # the current video's height and width
        self._last: np.ndarray | None = None  # the frame written last, repeated until the next one is due
        self._failing = False

    def write(self, image: np.ndarray, events: list[FaceEvent], still: bool, source: str, *, timestamp: float,
              clock: float) -> None:
        """Draw ``events`` on ``image``; a still goes to ``<target>/<source stem>_annotated.jpg``, a video frame to
        the video, for as long as it was shown (``clock``, seconds; ``timestamp``, the wall clock, names segments).
        The video runs at the source's own rate and plays at real speed: a frame is repeated where the source paused
        briefly, a burst is thinned, and a pause of over :data:`MAX_FILLED_GAP_S` is jumped over."""
        try:
            image = draw_events(image, events)
            if still:
                self.target.mkdir(parents=True, exist_ok=True)
                self._check(cv2.imwrite(str(self.target / (Path(source).stem + "_annotated.jpg")), image))
            elif self.fps is None:
                self._sample.append((image, timestamp, clock))
                if len(self._sample) >= RATE_SAMPLE_FRAMES or clock - self._sample[0][2] >= RATE_SAMPLE_S:
                    self._write_sample()
            else:
                self._write_video(image, timestamp, clock)
        except (OSError, cv2.error) as error:
            self._failed(error)
        else:
            if self._failing:
                log.warning("annotated output is written again to %s", self.target)
                self._failing = False

    def _write_sample(self) -> None:
        """Measure the rate from the frames held back, then write them."""
        intervals = [later[2] - earlier[2] for earlier, later in itertools.pairwise(self._sample)]
        intervals = [interval for interval in intervals if interval > 0]
        rate = 1.0 / float(np.median(intervals)) if intervals else VIDEO_FPS_RANGE[1]
        self.fps = round(min(max(rate, VIDEO_FPS_RANGE[0]), VIDEO_FPS_RANGE[1]), 2)
        sample, self._sample = self._sample, []
        for image, timestamp, clock in sample:
            self._write_video(image, timestamp, clock)

    def _write_video(self, image: np.ndarray, timestamp: float, clock: float) -> None:
        if self.writer is not None and self.segment_s and clock - self._video_start >= self.segment_s:
            self._show_last_until(clock)  # the segment ends where the next one begins
            self.close()
        if self.writer is None:
            self._open(image, timestamp, clock)
        if image.shape[:2] != self._size:  # a camera reopened at another resolution: the video keeps its own
            image = cv2.resize(image, self._size[::-1], interpolation=cv2.INTER_AREA)
        due = self._show_last_until(clock)
        if self._written == due:  # a frame that came sooner than the video's next one is shown from then on
            self.writer.write(image)
            self._written += 1
        self._last = image

    def _show_last_until(self, clock: float) -> int:
        """Repeat the last frame written up to ``clock`` (the video jumps over a pause instead); the index in the
        video that ``clock`` falls on."""
        due = round((clock - self._video_start) * self.fps)
        if due - self._written > MAX_FILLED_GAP_S * self.fps:
            self._video_start = clock - self._written / self.fps
            due = self._written
        while self._last is not None and self._written < due:
            self.writer.write(self._last)
            self._written += 1
        return due

    def _open(self, image: np.ndarray, timestamp: float, clock: float) -> None:
        path = self.target
        if self.segment_s:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))
            path = self.target.with_name(f"{self.target.stem}-{stamp}{self.target.suffix}")
            number = 1
            while path.exists():  # two segments within a second (a short segment, a restart)
                path = self.target.with_name(f"{self.target.stem}-{stamp}-{number}{self.target.suffix}")
                number += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        height, width = image.shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        self._check(writer.isOpened(), f"cannot open {path} for writing")
        self.writer, self._written, self._video_start = writer, 0, clock
        self._size, self._last = (height, width), None
        log.info("annotated video: %s (%dx%d, %.2f frames a second)", path, width, height, self.fps)
        if self.segment_s and self.keep:
            self._remove_old_segments()

    def _remove_old_segments(self) -> None:
        """Delete all but the newest ``keep`` segments (the one just opened included); only files named as this
        annotator names its segments are touched."""
        pattern = re.compile(re.escape(self.target.stem) + r"-\d{8}T\d{6}Z(-\d+)?" + re.escape(self.target.suffix))
        segments = sorted((p for p in self.target.parent.iterdir() if pattern.fullmatch(p.name)),
                          key=lambda p: (p.stat().st_mtime, p.name))
        for old in segments[:-self.keep]:
            old.unlink(missing_ok=True)
            log.info("annotated video %s deleted: output.annotate_keep keeps the newest %d", old, self.keep)

    @staticmethod
    def _check(ok: bool, message: str = "OpenCV could not write the annotated image") -> None:
        if not ok:
            raise OSError(message)

    def _failed(self, error: Exception) -> None:
        """Log the first failure of a streak; the runtime goes on without the annotated output."""
        if not self._failing:
            log.error("annotated output to %s failed: %s (the runtime goes on; logged again once it works)",
                      self.target, error)
            self._failing = True

    def close(self) -> None:
        """Finish the video file, if one was started (with the frames still held back for the rate)."""
        if self._sample:
            try:
                self._write_sample()
            except (OSError, cv2.error) as error:
                self._failed(error)
        if self.writer is not None:
            self.writer.release()
            self.writer = None
