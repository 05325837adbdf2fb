"""The processing loop: frames in, face events out.

For each frame: detect faces (every Nth frame, reusing boxes between), crop
each (levelled by the eyes, with any margin), run the shared preprocessing (the function training used),
classify, smooth per tracked face, and hand one event per face to the sinks.
Per-stage timings are kept for the benchmark and the metrics endpoint.
:class:`Runtime` takes its parts built; :func:`edge_runtime.service.build_runtime` builds them from a config.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from edge_runtime.annotate import Annotator
from edge_runtime.classifier import EmotionClassifier
from edge_runtime.core.faces import FaceEvent
from edge_runtime.core.preprocessing import preprocess_face, restore_blur
from edge_runtime.detectors import Box, CropOptions, FaceDetector, face_crop, find_faces
from edge_runtime.reporting import Reporter
from edge_runtime.sinks import Sink
from edge_runtime.smoothing import FaceSmoother
from edge_runtime.sources import Closing, Frame, FrameSource, capture_times

log = logging.getLogger(__name__)

_END = object()  # what next() gives once the source's frames have ended

STAGES = ("decode", "detect", "preprocess", "inference")


@dataclass
class StageTimer:
    """Seconds spent per stage (totals and the most recent samples, for percentiles)."""

    totals: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    keep: int = 10_000

    def add(self, stage: str, seconds: float) -> None:
        """Record one timing of ``stage`` (the first ``keep`` timings are kept for percentiles)."""
        self.totals[stage] += seconds
        self.counts[stage] += 1
        bucket = self.samples[stage]
        if len(bucket) < self.keep:
            bucket.append(seconds)

    def summary_ms(self) -> dict[str, dict[str, float]]:
        """Per stage: calls, mean, median and p90 in milliseconds."""
        summary = {}
        for stage in STAGES:
            values = np.asarray(self.samples[stage]) * 1000
            summary[stage] = {"calls": self.counts[stage],
                              "mean_ms": float(values.mean()) if len(values) else 0.0,
                              "median_ms": float(np.median(values)) if len(values) else 0.0,
                              "p90_ms": float(np.percentile(values, 90)) if len(values) else 0.0}
        return summary


@dataclass
class RunStats:
    """Counters of one run."""

    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    events: int = 0  # face events: one per face per processed frame
    records: int = 0  # what the sinks were handed (the face events, or changes or summaries, by output.mode)
    started: float = field(default_factory=time.monotonic)
    first_event_after_s: float | None = None
    last_frame_monotonic: float | None = None
    sink_failures: dict[str, int] = field(default_factory=dict)  # events each sink raised on, in all


def event_for(frame: Frame, face_index: int, box: Box, raw_probabilities: np.ndarray, smoothed,
              labels: tuple[str, ...]) -> FaceEvent:
    """The event of one face in one frame (a pure function of the model's output and the smoother's)."""
    raw_top = int(np.argmax(raw_probabilities))
    return FaceEvent(
        source=frame.source, frame=frame.index, ts=round(frame.timestamp, 3), face=face_index,
        track=smoothed.track_id, box=(int(box.x), int(box.y), int(box.w), int(box.h)), label=smoothed.label,
        raw_label=labels[raw_top], score=round(float(smoothed.score), 4),
        raw_score=round(float(raw_probabilities[raw_top]), 4),
        probs={label: round(float(p), 4) for label, p in zip(labels, smoothed.probabilities, strict=True)})


def classifier_input(crop: np.ndarray, options: CropOptions) -> np.ndarray:
    """The 48x48 model input of a face crop: the shared preprocessing, then blur restoration if ``options`` ask."""
    face = preprocess_face(crop)
    return restore_blur(face) if options.restore_blur else face


class Runtime:
    """Runs a source through detection, classification and smoothing, emitting events to sinks."""

    def __init__(self, source: FrameSource, detector: FaceDetector, classifier: EmotionClassifier,
                 smoother: FaceSmoother, reporter: Reporter, sinks: Iterable[Sink] = (), *,
                 crop: CropOptions = CropOptions(), every_n: int = 1, max_frames: int = 0,
                 annotator: Annotator | None = None):
        self.source = source
        self.detector = detector
        self.classifier = classifier
        self.sinks = list(sinks)
        self._failure_streaks: dict[str, int] = {}
        self.timer = StageTimer()
        self.stats = RunStats()
        self.smoother = smoother
        self.reporter = reporter
        self.crop = crop
        self.every_n, self.max_frames = every_n, max_frames
        self.annotator = annotator
        self._stop = Closing()  # set by SIGTERM's handler: see Closing
        # The classifier's invoke times of the frame just processed (read by frame listeners: the metrics).
        self.last_inference_seconds: tuple[float, ...] = ()
        self.frame_listeners: list[Callable[[Frame, list[FaceEvent]], None]] = []
        # Called at each idle tick of the source (no frame for a while: a camera being reopened), with the clock time.
        self.idle_listeners: list[Callable[[float], None]] = []

    def stop(self) -> None:
        """Ask the loop to finish after the current frame (thread- and signal-safe); wakes a source that waits."""
        self._stop.set()
        self.source.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def process(self, frame: Frame, boxes: list[Box] | None = None) -> tuple[list[Box], list[FaceEvent]]:
        """Detect (unless ``boxes`` are given), classify and smooth one frame; returns boxes and events."""
        if boxes is None:
            started = time.perf_counter()
            boxes = find_faces(self.detector, frame.image)
            self.timer.add("detect", time.perf_counter() - started)
        kept_boxes, raw, seconds = [], [], []
        for box in boxes:
            started = time.perf_counter()
            crop = face_crop(frame.image, box, self.crop.margin, self.crop.align)
            if crop is None:
                log.debug("frame %d: face box %s lies outside the frame, skipped", frame.index, box)
                continue
            face = classifier_input(crop, self.crop)
            self.timer.add("preprocess", time.perf_counter() - started)
            started = time.perf_counter()
            raw.append(self.classifier.probabilities(face))
            elapsed = time.perf_counter() - started
            self.timer.add("inference", elapsed)
            seconds.append(elapsed)
            kept_boxes.append(box)
        self.last_inference_seconds = tuple(seconds)
        if frame.still:
            self.smoother.reset()  # photos are independent: nothing carries from one to the next
        smoothed = self.smoother.update(kept_boxes, raw, frame.clock)
        events = [event_for(frame, i, box, probs, result, self.classifier.labels)
                  for i, (box, probs, result) in enumerate(zip(kept_boxes, raw, smoothed, strict=True))]
        return boxes, events

    def processed(self) -> Iterator[tuple[Frame, list[FaceEvent]]]:
        """Each frame of the source with its events, until the source ends, ``max_frames`` is reached or
        :meth:`stop` is called; faces are detected on every ``every_n``-th frame of a video and followed between."""
        every_n, limit = self.every_n, self.max_frames
        boxes: list[Box] = []
        frames = self.source.frames()
        count = 0
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                frame = next(frames, _END)
                if frame is _END:
                    break
                if frame is None:  # the source's idle tick: no frame for a while
                    self._idle()
                    continue
                self.timer.add("decode", time.perf_counter() - started)
                reuse = not frame.still and every_n > 1 and frame.index % every_n != 0
                boxes, events = self.process(frame, boxes if reuse else None)
                yield frame, events
                count += 1
                if limit and count >= limit:
                    break
        finally:
            frames.close()
            self.source.close()

    def _idle(self) -> None:
        """No frame came for a while: the faces not seen for too long leave, and a summary period that is over
        ends, as they would with frames; then the idle listeners hear of it."""
        _, clock = capture_times()
        self.smoother.expire(clock)
        self._emit(self.reporter.tick(clock))
        for listener in self.idle_listeners:
            listener(clock)

    def run(self) -> RunStats:
        """Process frames (see :meth:`processed`), handing every event to the sinks; the run's counters."""
        try:
            for frame, events in self.processed():
                self._record(frame, events)
            self._emit(self.reporter.finish())  # faces still in view leave; the last partial summary
        finally:
            if self.annotator is not None:
                self.annotator.close()
        return self.stats

    def _emit(self, records: list) -> None:
        """Hand each record (a face event, a change or a summary, by output.mode) to every sink."""
        self.stats.records += len(records)
        for record in records:
            for sink in self.sinks:
                try:
                    sink(record)
                except Exception as error:  # a failing sink must never stop inference
                    self._sink_failed(sink, error)
                else:
                    if self._failure_streaks.get(sink.name):
                        log.warning("sink %s works again after %d failed events", sink.name,
                                    self._failure_streaks.pop(sink.name))

    def _sink_failed(self, sink: Sink, error: Exception) -> None:
        """Count the failure; log once per streak of failures, not at frame rate."""
        failures = self.stats.sink_failures
        failures[sink.name] = failures.get(sink.name, 0) + 1
        streak = self._failure_streaks.get(sink.name, 0) + 1
        self._failure_streaks[sink.name] = streak
        if streak == 1:
            log.error("sink %s failed: %s: %s (further failures are counted in the metric sink_failed_events_total "
                      "until it works again)", sink.name, error.__class__.__name__, error)

    def _record(self, frame: Frame, events: list[FaceEvent]) -> None:
        stats = self.stats
        stats.frames += 1
        stats.last_frame_monotonic = time.monotonic()
        if events:
            stats.frames_with_faces += 1
            stats.faces += len(events)
            if stats.first_event_after_s is None:
                stats.first_event_after_s = time.monotonic() - stats.started
        elif frame.still:
            log.info("%s: no face found", frame.source)
        stats.events += len(events)
        self._emit(self.reporter.feed(frame.timestamp, frame.clock, frame.source, events, frame.still))
        for listener in self.frame_listeners:
            listener(frame, events)
        if self.annotator is not None:
            self.annotator.write(frame.image, events, frame.still, frame.source, timestamp=frame.timestamp,
                                 clock=frame.clock)
