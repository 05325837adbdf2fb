"""What the sinks receive, by ``output.mode``: every face in every frame, only the changes, or periodic summaries.

A camera at 25 fps with one face yields 25 face events a second: right for the
journal or a file, too many for a home-automation system. ``changes`` turns the
per-frame stream into a few events per face: when a tracked face appears, when
its smoothed label changes, and when it leaves (with how long it stayed and the
share of that time under each label). ``summary`` reports every
``output.summary_seconds`` how many faces were seen and the label distribution.
Both are pure functions of the per-frame events, so they are tested against the
``frames`` output of the same video.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edge_runtime.core.errors import ConfigError
from edge_runtime.core.faces import FaceChange, FaceEvent, Summary, shares_of
from edge_runtime.core.records import setting

OUTPUT_MODES = ("frames", "changes", "summary")


@dataclass
class _Track:
    first_clock: float  # clock times (see edge_runtime.sources.Frame): how long it stayed
    last_clock: float
    last_ts: float  # wall-clock time of its last event: when it left
    label: str
    labels: Counter = field(default_factory=Counter)


class ChangeReporter:
    """Per-frame face events in, :class:`FaceChange` events out.

    A face has left once its track has had no detection for more than
    ``max_missed_s`` of frame time (the smoother forgets it then too), or when
    the stream ends. Intervals are measured on the frames' clock that never
    steps; the records carry the events' wall-clock times.
    """

    def __init__(self, max_missed_s: float):
        self.max_missed_s = max_missed_s
        self.tracks: dict[int, _Track] = {}
        self.source = ""

    def feed(self, clock: float, source: str, events: list[FaceEvent]) -> list[FaceChange]:
        """The changes one processed frame (at ``clock``, its ``Frame.clock``) brings."""
        self.source = source
        out: list[FaceChange] = []
        for event in events:
            track = self.tracks.get(event.track)
            if track is None:
                self.tracks[event.track] = _Track(clock, clock, event.ts, event.label, Counter([event.label]))
                out.append(FaceChange("appeared", event.source, event.ts, event.track, event.label))
                continue
            if event.label != track.label:
                out.append(FaceChange("changed", event.source, event.ts, event.track, event.label, track.label))
                track.label = event.label
            track.last_clock, track.last_ts = clock, event.ts
            track.labels[event.label] += 1
        return out + self.expire(clock)

    def expire(self, clock: float) -> list[FaceChange]:
        """The faces not seen for more than ``max_missed_s`` at ``clock`` (also with no frame at all) leave."""
        gone = [track_id for track_id, track in self.tracks.items() if clock - track.last_clock > self.max_missed_s]
        return [self._left(track_id) for track_id in gone]

    def finish(self) -> list[FaceChange]:
        """The stream ended: every face still tracked has left."""
        return [self._left(track_id) for track_id in list(self.tracks)]

    def _left(self, track_id: int) -> FaceChange:
        track = self.tracks.pop(track_id)
        return FaceChange("left", self.source, track.last_ts, track_id, track.label,
                          duration_s=round(track.last_clock - track.first_clock, 3),
                          label_shares=shares_of(track.labels))


class SummaryReporter:
    """Per-frame face events in, one :class:`Summary` per ``period_s`` of frame time out (measured on the frames'
    clock that never steps; the summary carries wall-clock times)."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._reset(None, None)

    def _reset(self, start_ts: float | None, start_clock: float | None) -> None:
        self.start_ts, self.end_ts, self.start_clock = start_ts, start_ts, start_clock
        self.frames, self.face_frames = 0, 0
        self.tracks: set[int] = set()
        self.labels: Counter = Counter()
        self.source = ""

    def feed(self, timestamp: float, clock: float, source: str, events: list[FaceEvent]) -> list[Summary]:
        """Count one frame's faces (``timestamp``, ``clock``: its ``Frame`` times); the summary of the period this
        frame ends, if it ends one."""
        out = []
        if self.start_clock is None:
            self._reset(timestamp, clock)
        elif clock - self.start_clock >= self.period_s:
            out.append(self._summary())
            self._reset(timestamp, clock)
        self.source, self.end_ts = source, timestamp
        self.frames += 1
        self.face_frames += len(events)
        self.tracks.update(event.track for event in events)
        self.labels.update(event.label for event in events)
        return out

    def tick(self, clock: float) -> list[Summary]:
        """No frame came (a camera is being reopened): the period ends on time all the same, if it saw any frame;
        the next begins with the next frame."""
        if not self.frames or clock - self.start_clock < self.period_s:
            return []
        summary = self._summary()
        self._reset(None, None)
        return [summary]

    def finish(self) -> list[Summary]:
        """The stream ended: the partial period, if it saw any frame."""
        return [self._summary()] if self.frames else []

    def _summary(self) -> Summary:
        return Summary("summary", self.source, round(self.start_ts, 3), round(self.end_ts, 3), self.frames,
                       len(self.tracks), self.face_frames, shares_of(self.labels))


class Reporter:
    """The ``output.mode`` in front of the sinks: what each processed frame hands them, and what the end does."""

    def __init__(self, mode: str, *, max_missed_s: float, summary_seconds: float):
        if mode not in OUTPUT_MODES:
            raise ConfigError(f"output.mode: {mode!r} is not allowed; choose one of {', '.join(OUTPUT_MODES)}")
        self.mode = mode
        self._changes = ChangeReporter(max_missed_s) if mode == "changes" else None
        self._summary = SummaryReporter(summary_seconds) if mode == "summary" else None

    def feed(self, timestamp: float, clock: float, source: str, events: list[FaceEvent],
             still: bool = False) -> list[FaceEvent | FaceChange | Summary]:
        """What the sinks get for one processed frame in this mode (``timestamp``, ``clock``: its ``Frame`` times;
        ``still``: a photo, whose faces leave with it)."""
        if self._changes is not None:
            changes = self._changes.feed(clock, source, events)
            # Photos are independent (the smoother starts afresh on each): their faces leave with the photo.
            return changes + self._changes.finish() if still else changes
        if self._summary is not None:
            return self._summary.feed(timestamp, clock, source, events)
        return list(events)

    def tick(self, clock: float) -> list[FaceChange | Summary]:
        """What the sinks get when no frame came for a while (the source's idle tick, at ``clock``): the faces not
        seen for too long leave, a summary period that is over ends."""
        if self._changes is not None:
            return self._changes.expire(clock)
        if self._summary is not None:
            return self._summary.tick(clock)
        return []

    def finish(self) -> list[FaceChange | Summary]:
        """What the sinks get when the stream ends: the faces leaving, or the last partial summary."""
        if self._changes is not None:
            return self._changes.finish()
        if self._summary is not None:
            return self._summary.finish()
        return []


@dataclass(frozen=True)
class OutputConfig:
    """The ``[output]`` section: what the sinks get, and the annotated copy of the frames."""

    mode: str = setting("frames", "what the sinks get: frames (every face in every frame), changes (a face appeared, "
                        "changed its label, left) or summary (every summary_seconds)", choices=OUTPUT_MODES)
    summary_seconds: float = setting(60.0, "summary mode: the period each summary covers", minimum=0.01)
    annotate: str = setting("", "write frames with boxes and labels to this video/image path (off by default: privacy)")
    annotate_segment_minutes: float = setting(10.0, "a camera, stream or looped file's annotated video is cut into "
                                              "files this long, named <stem>-<UTC time><suffix> (each is complete "
                                              "once the next begins)", minimum=0.05)
    annotate_keep: int = setting(12, "keep the newest this many of those annotated video files and delete older "
                                 "ones (0 = keep all: the disk fills)", minimum=0)
