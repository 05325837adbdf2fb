"""The runtime as a long-running service: sinks, health/metrics, systemd notify, clean shutdown.

:class:`Service` is what ``edge-runtime run`` executes, under systemd or not:
READY=1 once the model is loaded and the first frame read; WATCHDOG=1 from the
processing loop, so a stalled camera or hung inference gets the service
restarted; on SIGTERM/SIGINT, STOPPING=1, the loop ends after the current
frame, every sink is flushed (MQTT until acknowledged, up to
``service.stop_timeout_s``) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Iterable

import cv2

from edge_runtime.annotate import Annotator, draw_events
from edge_runtime.classifier import EmotionClassifier
from edge_runtime.config import Config, mqtt_password, mqtt_tls_files, read_secret, server_tls_context
from edge_runtime.core.errors import FerError
from edge_runtime.core.version import __version__
from edge_runtime.detectors import CropOptions, FaceDetector, make_detector
from edge_runtime.health import FrameRate, HealthReport, SinkHealth
from edge_runtime.homeassistant import Discovery, HomeAssistantPublisher
from edge_runtime.pipeline import Runtime
from edge_runtime.reporting import Reporter
from edge_runtime.sinks import RotatingFileSink, Sink, StdoutSink
from edge_runtime.sinks.mqtt import MqttSink, tls_context
from edge_runtime.sinks.spool import Spool
from edge_runtime.smoothing import FaceSmoother
from edge_runtime.sources import FolderSource, FrameSource, ImageFileSource, never_ends, open_source
from edge_runtime.systemd import Notifier

log = logging.getLogger(__name__)


class StopRequest:
    """Catches SIGTERM/SIGINT from process start until :meth:`Service.run` installs its own handlers.

    Without it a signal during start-up (loading the model takes a moment on a
    Pi) would kill the process with the default action instead of a clean exit 0.
    """

    def __init__(self):
        self.signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._record)

    def _record(self, signum, _frame) -> None:
        self.signal = signum


def load_models(config: Config) -> tuple[FaceDetector, EmotionClassifier]:
    """The face detector and the emotion classifier the config names, loaded (and the model checked)."""
    cv2.setNumThreads(config.model.threads)
    classifier = EmotionClassifier.from_file(config.model.file, threads=config.model.threads,
                                             backend=config.model.backend, fallback_to_cpu=config.model.fallback_to_cpu,
                                             tta=config.model.tta)
    d = config.detector
    detector = make_detector(d.name, d.shared_options(config.model.threads), d.backend)
    return detector, classifier


def source_from_config(config: Config, spec: str | None = None) -> FrameSource:
    """The frame source of ``source.spec`` (or ``spec``) with the config's source settings (nothing opened yet)."""
    retries = None if config.source.camera_retries < 0 else config.source.camera_retries
    return open_source(config.source.spec if spec is None else spec, loop=config.source.loop, camera_retries=retries,
                       realtime=config.source.realtime, max_pixels=config.source.max_pixels,
                       newest_frame=config.source.newest_frame, max_backoff_s=config.source.max_backoff_s)


def build_runtime(config: Config, sinks: Iterable[Sink] = (), *, source: FrameSource | None = None,
                  models: tuple[FaceDetector, EmotionClassifier] | None = None) -> Runtime:
    """The runtime the config describes: its detector and model loaded (unless ``models`` are given), its source
    (``source.spec`` unless ``source`` is given) not opened yet, its smoothing, reporting and annotation set up."""
    detector, classifier = load_models(config) if models is None else models
    d, s, output = config.detector, config.smoothing, config.output
    reporter = Reporter(output.mode, max_missed_s=s.max_missed_s, summary_seconds=output.summary_seconds)
    crop = CropOptions(d.margin, d.align, d.restore_blur)
    return Runtime(source_from_config(config) if source is None else source, detector, classifier,
                   FaceSmoother(classifier.labels, s), reporter, sinks, crop=crop,
                   every_n=d.every_n, max_frames=config.source.max_frames,
                   annotator=annotator_from_config(config))


def annotator_from_config(config: Config) -> Annotator | None:
    """The annotated output the config asks for (None: off), cut into segments when the source never ends."""
    output = config.output
    if not output.annotate:
        return None
    if not never_ends(config.source.spec, config.source.loop):
        return Annotator(output.annotate)
    return Annotator(output.annotate, output.annotate_segment_minutes * 60, output.annotate_keep)


def build_sinks(config: Config) -> list:
    """The sinks the config asks for, in order: stdout, file, MQTT."""
    sinks: list = []
    if config.sinks.stdout:
        sinks.append(StdoutSink())
    if config.sinks.file:
        sinks.append(RotatingFileSink(config.sinks.file, config.sinks.file_max_bytes, config.sinks.file_backups))
    m = config.mqtt
    if m.host:
        discovery = Discovery(m.node_id, m.discovery_prefix, __version__)
        companion = HomeAssistantPublisher(discovery) if m.discovery else None
        spool = Spool(m.spool_file, m.spool_max_bytes) if m.spool_file else None
        files = mqtt_tls_files(m)
        sinks.append(MqttSink.from_options(m, password=mqtt_password(m), companion=companion, spool=spool,
                                           tls=tls_context(files) if files is not None else None))
    return sinks


def _why_no_image(source: ImageFileSource | FolderSource) -> str:
    """Why a photo or folder source gave no frame, for the one-line error: what was skipped, and for a folder of
    videos, what to do instead."""
    skipped = source.health().skipped
    if not skipped:
        return " (the folder is empty)"
    videos = source.skipped_videos if isinstance(source, FolderSource) else 0
    if videos:
        return (f" ({skipped} unreadable or not an image, {videos} of them videos: a folder source reads still "
                "images; give one video file as the source)")
    return f" ({skipped} unreadable or not an image)"


class Service:
    """One run of the runtime with everything around it."""

    def __init__(self, config: Config, runtime: Runtime | None = None, sinks: list | None = None,
                 notifier: Notifier | None = None):
        self.config = config
        self.sinks = build_sinks(config) if sinks is None else sinks
        self.runtime = runtime or build_runtime(config, self.sinks)
        self.notifier = notifier or (Notifier() if config.service.notify else Notifier(environ={}))
        self.metrics = None
        self.http = None
        self.preview = None
        self.frame_rate = FrameRate()
        self.stop_signal: int | None = None  # the signal that asked for the stop
        self._faces_in_view = 0
        self._ready_sent = False  # READY=1 went out: at the first frame, or while a camera that is down is retried
        self._waiting_status = False  # STATUS says the camera is being waited for
        self._delivering = True  # as the MQTT sinks last heard: the source delivers frames
        self._last_frame_clock: float | None = None  # None until the first frame
        self._started_clock = time.monotonic()
        self._counted: dict[str, int] = {}  # what the Prometheus counters were last advanced to
        self.runtime.frame_listeners.append(self._on_frame)
        self.runtime.idle_listeners.append(self._on_idle)
        if config.http.listen:
            from edge_runtime.health import HealthServer, Metrics

            self.metrics = Metrics(config.http.metrics_prefix)
            self.metrics.describe_model(config.model.file.name, self.runtime.classifier.contract)
            if config.http.preview:
                from edge_runtime.preview import Preview

                self.preview = Preview(config.model.file.name, draw_events)
            http = config.http
            self.http = HealthServer(http.listen, self.metrics, self.health, self.preview,
                                     allowed_hosts=http.allowed_hosts,
                                     credentials=read_secret(http.auth_file, "http.auth_file", "USER:PASSWORD")
                                     if http.auth_file else "",
                                     tls=server_tls_context(http) if http.tls_cert_file else None)

    def health(self) -> HealthReport:
        """Healthy while frames arrive within ``http.stall_seconds`` and no sink is faulted (its sender crashed and
        has not delivered since its restart)."""
        stats = self.runtime.stats
        source = self.runtime.source.health()
        frames_per_second = self.frame_rate.rate(time.monotonic())
        since = None if stats.last_frame_monotonic is None else time.monotonic() - stats.last_frame_monotonic
        if since is None:
            status = "starting"
        elif since > self.config.http.stall_seconds:
            status = "stalled"
        elif any(sink.fault for sink in self.sinks):
            status = "sink_failed"
        else:
            status = "ok"
        return HealthReport(
            status=status, frames=stats.frames, events=stats.events, source_connected=source.connected,
            source_reconnects=source.reconnects, source_skipped=source.skipped,
            sinks={sink.name: SinkHealth(sink.connected, sink.dropped, sink.fault) for sink in self.sinks},
            fps=0.0 if frames_per_second is None else round(frames_per_second, 2), faces_in_view=self._faces_in_view,
            seconds_since_frame=None if since is None else round(since, 3))

    def _on_frame(self, frame, events) -> None:
        if self._last_frame_clock is None:
            self._ready_sent = True
            self.notifier.ready(f"processing {self.runtime.source.name}")
            log.info("ready: model loaded, first frame read from %s", self.runtime.source.name)
        elif self._waiting_status:
            self.notifier.status(f"processing {self.runtime.source.name}")
        self._waiting_status = False
        self._last_frame_clock = frame.clock
        self._tell_mqtt_sinks(delivering=True)
        self.notifier.watchdog()
        now = time.monotonic()
        self.frame_rate.tick(now)
        self._faces_in_view = len(events)
        if self.preview is not None:
            self.preview.offer(frame.image, events, frame.clock)
        if self.metrics is not None:
            self.metrics.frame_done(len(events), [e.label for e in events], self.runtime.last_inference_seconds,
                                    self.frame_rate.rate(now))
            self._update_source_and_sink_metrics()

    def _update_source_and_sink_metrics(self) -> None:
        """The source's and the sinks' counters and gauges as they stand: at each frame, and at each idle tick (a
        camera that is gone shows as disconnected while no frame comes)."""
        source = self.runtime.source.health()
        self._count(self.metrics.reconnects, "source:reconnects", source.reconnects)
        self._count(self.metrics.frames_dropped, "source:skipped", source.skipped)
        self._count(self.metrics.superseded, "source:superseded", source.superseded)
        self.metrics.source_connected.set(1 if source.connected else 0)
        failures = self.runtime.stats.sink_failures
        for sink in self.sinks:
            self.metrics.sink_connected.labels(sink=sink.name).set(1 if sink.connected else 0)
            self.metrics.sink_faulted.labels(sink=sink.name).set(1 if sink.fault else 0)
            self._count(self.metrics.sink_dropped.labels(sink=sink.name), f"dropped:{sink.name}", sink.dropped)
            self._count(self.metrics.sink_failed.labels(sink=sink.name), f"failed:{sink.name}",
                        failures.get(sink.name, 0))

    def _count(self, counter, key: str, total: int) -> None:
        """Advance a Prometheus counter to ``total``, a count the runtime keeps itself."""
        counter.inc(total - self._counted.get(key, 0))
        self._counted[key] = total

    def request_stop(self, signum=None, _frame=None) -> None:
        """Signal handler: end the loop after the current frame, and STOPPING=1.

        It only sets flags, wakes waits and sends one datagram: a handler runs wherever the main thread was, and
        one that logged could land inside a log write and fail there (a reentrant write), before stopping
        anything. :meth:`run` logs the signal once the loop has ended.
        """
        if signum is not None:
            self.stop_signal = signum
        self.runtime.stop()
        self.notifier.stopping(quiet=True)  # sent again, and logged if it fails, as run() ends

    def _on_idle(self, clock: float) -> None:
        """The source's idle tick (no frame for a while). While the source is not connected (a camera reopened with
        backoff) the process is doing its job, so the loop tells systemd: READY=1 once, WATCHDOG=1, and why in
        STATUS. The watchdog then restarts a loop that hangs, or a camera that stays open but stops delivering, not
        a service that waits for its camera: restarting would reopen the camera no better, and would reset the
        metrics and announce the device online at each start for as long as it is down. Once the camera has been
        gone for as long as a face takes to leave, Home Assistant's sensors go unavailable until its next frame."""
        self._faces_in_view = len(self.runtime.smoother.track_ids)  # the faces still tracked, not yet left
        if self.preview is not None:
            self.preview.readings.record([], clock)  # the faces leave the live view too
        if self.metrics is not None:
            self.metrics.fps.set(self.frame_rate.rate(time.monotonic()) or 0.0)  # no frame in the window: 0
            self._update_source_and_sink_metrics()
        source = self.runtime.source
        if source.health().connected:
            return
        since = self._started_clock if self._last_frame_clock is None else self._last_frame_clock
        if clock - since > self.config.smoothing.max_missed_s:  # as long as a face takes to leave: not a hiccup
            self._tell_mqtt_sinks(delivering=False)
        status = f"waiting for frames from {source.name}: not connected (a camera is reopened with backoff)"
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(status)
        elif not self._waiting_status:
            self.notifier.status(status)
        self._waiting_status = True
        self.notifier.watchdog()

    def _tell_mqtt_sinks(self, delivering: bool) -> None:
        """Whether the source delivers frames, to the MQTT sinks' companions (Home Assistant's availability), when
        that changes."""
        if delivering == self._delivering:
            return
        self._delivering = delivering
        for sink in self.sinks:
            if isinstance(sink, MqttSink):
                sink.source_changed(delivering)

    def run(self, stop_requested: "StopRequest | None" = None) -> int:
        """Run until the source ends or a stop is requested; flush and close everything; return the exit code.

        ``stop_requested``: a SIGTERM/SIGINT that arrived while the service was
        being built (model loading, say) stops it before the first frame.
        """
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if stop_requested is not None and stop_requested.signal is not None:
            self.request_stop(stop_requested.signal)
        if self.http is not None:
            self.http.start()
        try:
            stats = self.runtime.run()
            if self.stop_signal is not None:
                log.info("stopped by %s", signal.Signals(self.stop_signal).name)
            log.info("processed %d frames, %d with faces: %d face events; the sinks got %d records (output.mode = "
                     "%s)", stats.frames, stats.frames_with_faces, stats.events, stats.records,
                     self.config.output.mode)
            source = self.runtime.source
            if stats.frames == 0 and isinstance(source, ImageFileSource) and source.refusal:
                raise FerError(f"{source.name}: {source.refusal}")
            if stats.frames == 0 and isinstance(source, (ImageFileSource, FolderSource)):
                raise FerError(f"{source.name}: no readable image{_why_no_image(source)}")
        finally:
            self.notifier.stopping()
            deadline = time.monotonic() + self.config.service.stop_timeout_s
            for sink in self.sinks:
                try:
                    sink.flush(max(0.0, deadline - time.monotonic()))
                    sink.close()
                except Exception as error:  # closing one sink must not keep the others from flushing
                    log.error("closing sink %s failed: %s", sink.name, error)
                if sink.dropped:
                    log.warning("sink %s dropped %d events in this run", sink.name, sink.dropped)
            if self.preview is not None:
                self.preview.close()
            if self.http is not None:
                self.http.close()
            self.notifier.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
