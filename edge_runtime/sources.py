"""Frame sources behind one small interface: image file, folder of images, video file, camera/stream, picamera2.

A source yields :class:`Frame` values. Still images are marked ``still`` so
the pipeline never carries smoothing from one photo to the next. Cameras that
fail are reopened with exponential backoff instead of crashing (or crash-looping
under systemd); the end of a video file is a clean end of the stream.
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Protocol

import cv2
import numpy as np

from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import IMAGE_SUFFIXES
from edge_runtime.core.records import setting

log = logging.getLogger(__name__)

STREAM_PATTERN = re.compile(r"^(rtsp|rtsps|http|https|udp|tcp)://", re.IGNORECASE)
# A network stream that stops sending blocks a read in FFmpeg: bound it, so a stall is noticed (and a stop honoured)
# within seconds rather than after FFmpeg's default of 30 s.
STREAM_TIMEOUT_MS = 2000


def _open_capture(spec: str | int):
    """OpenCV's capture for a camera index, device path or stream URL (streams with bounded open/read waits)."""
    if isinstance(spec, str) and STREAM_PATTERN.match(spec):
        return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                       cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
    return cv2.VideoCapture(spec)


class Frame(NamedTuple):
    """One frame: pixels (BGR or grayscale uint8), where it came from, its index, and its time on two clocks.

    ``timestamp`` is the wall-clock time of capture, which the records carry. ``clock`` is the frame's time on a
    clock that never steps (``time.monotonic()`` at capture, for cameras and photos; the start of playback plus the
    frame's own media time, for a video file), and everything that measures an interval uses it: smoothing, tracks,
    output periods, the live view's strip. The wall clock can step by hours (NTP setting the clock of a Pi, which has
    no real-time clock); an interval measured on it across a step backwards would freeze a reading for as long.
    """

    image: np.ndarray
    source: str
    index: int
    timestamp: float
    clock: float
    still: bool = False


def capture_times() -> tuple[float, float]:
    """A frame captured now: its wall-clock time and its time on the clock that never steps (see :class:`Frame`)."""
    return time.time(), time.monotonic()


@dataclass(frozen=True)
class SourceHealth:
    """A source's state for /healthz and /metrics: is it delivering, how often it was reopened, what it lost."""

    connected: bool
    reconnects: int
    skipped: int  # frames or files that could not be read (a failed camera read, an unreadable image)
    superseded: int = 0  # a camera's frames replaced by a newer one before the runtime had time for them


# While a camera has no frame to give (it is being reopened with backoff, or is slow), its frames() yields None at
# least this often, so that the loop goes on: faces that are no longer seen leave on time, and the loop itself tells
# systemd's watchdog it is alive.
IDLE_TICK_S = 0.5


class FrameSource(Protocol):
    """Anything that yields frames; ``close`` releases the device or file."""

    name: str

    def frames(self) -> Iterator[Frame | None]:
        """Yield frames until the source ends (video end, last image) or ``close`` is called; a camera also yields
        None every :data:`IDLE_TICK_S` while it has no frame."""
        ...

    def health(self) -> SourceHealth:
        """The source's state now."""
        ...

    def close(self) -> None:
        """Release resources; safe to call twice."""
        ...


class _WakePipe:
    """A pipe that wakes a ``poll`` on :meth:`fileno`: :meth:`wake` writes a byte, takes no lock and never blocks
    (safe from a signal handler, from any thread); :meth:`drain` empties it for the next wait."""

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        weakref.finalize(self, _close_descriptors, self._read_fd, self._write_fd)

    def fileno(self) -> int:
        return self._read_fd

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:  # the pipe is full of earlier wake-ups: the waits are woken already
            pass

    def drain(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass


def _close_descriptors(*descriptors: int) -> None:
    for descriptor in descriptors:
        os.close(descriptor)


class Closing:
    """A one-way "stop now" flag whose waits it cuts short, and which a signal handler may set.

    ``threading.Event`` cannot be that: a handler runs in the main thread between two bytecodes, possibly inside
    that thread's own ``Event.wait`` while it holds the event's lock, and ``Event.set`` then waits for that lock
    forever (a SIGTERM that lands as a camera's backoff wait begins hangs the service). :meth:`set` takes no lock:
    it sets the flag and wakes a pipe (never drained: it stays readable); :meth:`wait` sleeps in ``poll`` on that
    pipe, so it returns as soon as the byte is there, even when the flag was set just before the ``poll`` began.
    """

    def __init__(self):
        self._set = False
        self._pipe = _WakePipe()

    def set(self) -> None:
        """Set the flag and wake every wait; never blocks (safe from a signal handler, from any thread)."""
        self._set = True
        self._pipe.wake()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    def fileno(self) -> int:
        """A descriptor that turns readable once the flag is set (to wait for it beside other things)."""
        return self._pipe.fileno()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less once the flag is set; whether it is set."""
        if not self._set:
            poller = select.poll()
            poller.register(self._pipe.fileno(), select.POLLIN)
            poller.poll(max(0, math.ceil(timeout * 1000)))
        return self._set


# Reopening a lost camera waits this long at first, then twice as long after every failure, up to a cap
# (source.max_backoff_s, by default MAX_BACKOFF_S).
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class _Backoff:
    """Reopening a lost camera: waits that double up to a cap (``wait`` ends early on close), up to ``max_retries``."""

    def __init__(self, name: str, hint: str, initial_s: float, maximum_s: float, max_retries: int | None,
                 wait: Callable[[float], object]):
        self.name, self.hint, self.initial_s, self.maximum_s = name, hint, initial_s, maximum_s
        self.max_retries, self.wait = max_retries, wait
        self.failures, self.delay = 0, initial_s

    def failed(self) -> Iterator[None]:
        """An open failed: give up (FerError) after ``max_retries``, else wait the current delay and double it. The
        wait is cut into steps of :data:`IDLE_TICK_S`, each announced by a None (the frame loop's idle tick); it ends
        early once ``wait`` says the source is closing."""
        self.failures += 1
        if self.max_retries is not None and self.failures > self.max_retries:
            raise FerError(f"{self.name} unavailable after {self.max_retries} retries; {self.hint}")
        log.warning("%s unavailable, retrying in %.1f s", self.name, self.delay)
        remaining, self.delay = self.delay, min(self.delay * 2, self.maximum_s)
        while remaining > 0:
            yield None
            step = min(remaining, IDLE_TICK_S)
            if self.wait(step):
                return
            remaining -= step

    def succeeded(self) -> None:
        """A frame arrived: the next failure starts the backoff afresh."""
        self.failures, self.delay = 0, self.initial_s


class _Counters:
    """The counters behind :meth:`FrameSource.health`, shared by every source."""

    connected = False
    reconnects = 0
    skipped = 0
    superseded = 0

    def health(self) -> SourceHealth:
        return SourceHealth(self.connected, self.reconnects, self.skipped, self.superseded)


# How much of a file is read to find its pixel size: a JPEG's frame header may follow large metadata (EXIF, ICC).
HEADER_BYTES = 256 * 1024
# JPEG start-of-frame markers (0xC0-0xCF carry the size, except DHT 0xC4, JPG 0xC8 and DAC 0xCC).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP or PNM file's first bytes; None when the format
    is another or the header does not say (OpenCV's own limit still applies to those)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        return int.from_bytes(data[18:22], "little", signed=True), abs(int.from_bytes(data[22:26], "little",
                                                                                         signed=True))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:1] == b"P" and data[1:2] in b"123456":
        fields = data[2:200].split(maxsplit=3)  # magic, then width and height (PNM comments are rare enough)
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0]), int(fields[1])
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _read_still(path: Path, level: int, max_pixels: int = 0) -> tuple[np.ndarray | None, str]:
    """The image at ``path`` (BGR) and ``""``, or None and why it was skipped, after logging that at ``level``.

    One bad file must not stop a run, so it is never an exception. With
    ``max_pixels``, an image whose header claims more is skipped before any
    pixel is decoded (a 392 KB PNG can decode to 2.4 GB).
    """
    reason = ""
    if max_pixels:
        try:
            with open(path, "rb") as handle:
                size = header_size(handle.read(HEADER_BYTES))
        except OSError as error:
            size, reason = None, f"cannot be read ({error.strerror})"
        if size is not None and size[0] * size[1] > max_pixels:
            reason = (f"{size[0]}x{size[1]} pixels is more than source.max_pixels ({max_pixels}); raise the limit if "
                      "the image is genuine")
    image = None
    if not reason:
        try:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as error:  # a header that claims more pixels than OpenCV will allocate (a decompression bomb)
            reason = f"refused by the image decoder ({str(error).strip().splitlines()[-1][:160]})"
        else:
            reason = "unreadable or corrupt image" if image is None else ""
    if reason:
        log.log(level, "%s: %s, skipped", path, reason)
    elif path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_ends_whole(path):
        log.warning("%s: truncated JPEG (no end marker): its lower part is missing or grey; classified as it is", path)
    return image, reason


def _jpeg_ends_whole(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (within the last KB: some writers pad after it)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()


class ImageFileSource(_Counters):
    """One still image (skipped, with one line, if its header claims more than ``max_pixels``; 0 = no limit)."""

    def __init__(self, path: str | Path, max_pixels: int = 0):
        self.path = Path(path)
        self.name = str(self.path)
        self.max_pixels = max_pixels
        self.refusal = ""  # why the image was skipped

    def frames(self) -> Iterator[Frame]:
        # The one image the user asked for: an error, not a warning.
        image, self.refusal = _read_still(self.path, logging.ERROR, self.max_pixels)
        if image is None:
            self.skipped += 1
            return
        self.connected = True
        yield Frame(image, str(self.path), 0, *capture_times(), still=True)

    def close(self) -> None:
        pass


# Common video containers: only to tell a user who points a folder source at videos what to do instead.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".h264"})


class FolderSource(_Counters):
    """Every image in a folder (sorted by name); non-images and unreadable files are logged and skipped."""

    skipped_videos = 0  # of the skipped files, those named as videos

    def __init__(self, path: str | Path, loop: bool = False, max_pixels: int = 0):
        self.path = Path(path)
        self.name = str(self.path)
        self.loop, self.max_pixels = loop, max_pixels

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            files = sorted(p for p in self.path.iterdir() if p.is_file())
            if not files:
                log.warning("%s: the folder holds no files", self.path)
            produced = False
            for file in files:
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    log.warning("%s: not an image file, skipped", file)
                    self.skipped += 1
                    self.skipped_videos += file.suffix.lower() in VIDEO_SUFFIXES
                    continue
                image, _ = _read_still(file, logging.WARNING, self.max_pixels)
                if image is None:
                    self.skipped += 1
                    continue
                produced = self.connected = True
                yield Frame(image, str(file), index, *capture_times(), still=True)
                index += 1
            if not self.loop or not produced:
                return

    def close(self) -> None:
        pass


class MediaClock:
    """A video file's frame times: the start of playback plus each frame's own media time, on the clock that never
    steps (``now``; see :class:`Frame`).

    Frames are stamped with their position in the file, not with when they
    were decoded, so time-based smoothing sees the file's real pace even when
    it decodes at 8x real time. With ``realtime``, :meth:`pace` waits until a
    frame's moment has come, as a camera would deliver it.
    """

    def __init__(self, fps: float, realtime: bool, wait: Callable[[float], object],
                 now: Callable[[], float] = time.monotonic):
        self.frame_s = 1.0 / fps if fps and 0 < fps < 1000 else 1.0 / 25  # a file without a usable rate: 25 fps
        self.realtime, self.wait, self.now = realtime, wait, now
        self.start = now()
        self.offset_s = 0.0  # media time of earlier loops
        self.last_s = -self.frame_s

    def stamp(self, position_ms: float) -> float:
        """The clock time of a frame at ``position_ms`` in the file (its index-based time when that is unknown)."""
        media_s = position_ms / 1000 if position_ms > 0 else self.last_s + self.frame_s
        if media_s <= self.last_s:  # a container with missing or repeated times: keep the clock moving
            media_s = self.last_s + self.frame_s
        self.last_s = media_s
        return self.start + self.offset_s + media_s

    def rewind(self) -> None:
        """The file starts again (``loop``): its times continue after the last frame's."""
        self.offset_s += self.last_s + self.frame_s
        self.last_s = -self.frame_s

    def pace(self, clock: float) -> None:
        """With ``realtime``, wait until the clock time ``clock`` has come."""
        if self.realtime:
            ahead = clock - self.now()
            if ahead > 0:
                self.wait(ahead)


# A video file keeps being read past frames that fail to decode (a damaged stretch), up to this many in a row: about
# 10 s of video at 25 fps. Beyond it, or past the frame count the container gives, the file has ended.
MAX_UNREADABLE_FRAMES_IN_A_ROW = 250


class VideoFileSource(_Counters):
    """A video file, optionally replayed endlessly (``loop``) or at its own frame rate (``realtime``)."""

    def __init__(self, path: str | Path, loop: bool = False, realtime: bool = False):
        self.path = Path(path)
        self.name = str(self.path)
        self.loop, self.realtime = loop, realtime
        self._closed = False
        self._closing = Closing()

    def _open(self):
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise FerError(f"cannot open video {self.path}: unreadable, truncated or in a format OpenCV cannot decode")
        return capture

    def frames(self) -> Iterator[Frame]:
        index = 0
        capture = self._open()
        clock = MediaClock(capture.get(cv2.CAP_PROP_FPS), self.realtime, self._closing.wait)
        wall_offset = time.time() - clock.start  # a frame's wall-clock time: its clock time plus this
        length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or less when the container does not say
        unreadable = 0  # failed reads since the last good frame: a damaged stretch, or the end
        passed = 0  # frames of this pass through the file, read or skipped
        try:
            while not self._closed:
                ok, image = capture.read()
                if not ok or image is None:
                    unreadable += 1
                    within = length <= 0 or passed + unreadable < length
                    if within and unreadable < MAX_UNREADABLE_FRAMES_IN_A_ROW:
                        continue  # the decoder resumes at the next frame it can read
                    if self.loop and index > 0:
                        capture.release()
                        capture = self._open()
                        clock.rewind()
                        unreadable = passed = 0
                        continue
                    damaged = f"; {self.skipped} unreadable frames skipped" if self.skipped else ""
                    log.info("%s: end of video after %d frames%s", self.path, index, damaged)
                    self.connected = False
                    return
                if unreadable:
                    self.skipped += unreadable
                    log.warning("%s: %d unreadable frames skipped before frame %d (a damaged stretch of the file)",
                                self.path, unreadable, index)
                    passed, unreadable = passed + unreadable, 0
                passed += 1
                self.connected = True
                frame_clock = clock.stamp(capture.get(cv2.CAP_PROP_POS_MSEC))
                clock.pace(frame_clock)
                yield Frame(image, str(self.path), index, frame_clock + wall_offset, frame_clock)
                index += 1
        finally:
            capture.release()

    def close(self) -> None:
        """Stop after the current frame (safe from a signal handler); the frame loop releases the file."""
        self._closed = True
        self._closing.set()


class _NewestCapture:
    """The newest capture of a reader thread, for a consumer that may be slower than the camera: a capture not taken
    before the next one arrives is replaced by it.

    :meth:`take` waits in ``poll`` for a capture, the reader's end or ``closing``; it holds the lock only to swap the
    slot, and a signal handler that lands meanwhile takes no lock (it sets ``closing``), so it cannot deadlock.
    """

    def __init__(self, closing: Closing):
        self._closing = closing
        self._lock = threading.Lock()
        self._capture: tuple[np.ndarray, float, float] | None = None
        self._ended, self._error = False, None
        self._news = _WakePipe()
        self._poller = select.poll()  # only the consumer's thread waits on it
        self._poller.register(self._news.fileno(), select.POLLIN)
        self._poller.register(closing.fileno(), select.POLLIN)

    def put(self, capture: tuple[np.ndarray, float, float]) -> bool:
        """Offer the reader's newest capture (image, wall-clock time, clock time); whether it replaced one."""
        with self._lock:
            replaced = self._capture is not None
            self._capture = capture
        self._news.wake()
        return replaced

    def end(self, error: Exception | None) -> None:
        """The reader has stopped: for good (``error``, raised to the consumer) or because it was closed."""
        with self._lock:
            self._ended, self._error = True, error
        self._news.wake()

    def take(self, timeout_s: float) -> tuple[np.ndarray, float, float] | None:
        """The newest capture not taken yet, waiting up to ``timeout_s`` for one (None if none came). Once closed,
        or once the reader has ended, it raises :class:`EOFError` (or the reader's error, if it failed)."""
        deadline = time.monotonic() + timeout_s
        while not self._closing.is_set():
            with self._lock:
                capture, self._capture = self._capture, None
                ended, error = self._ended, self._error
            if capture is not None:
                return capture
            if error is not None:
                raise error
            if ended:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._poller.poll(math.ceil(left * 1000))  # every put, end and close wakes it: nothing is slept through
            self._news.drain()
        raise EOFError


# How long a closed camera's frames() waits for its reader thread to finish the read it is in: past a stream's
# read timeout, so the thread (which releases the device itself) is not left running.
READER_JOIN_S = STREAM_TIMEOUT_MS / 1000 + 1.0


class CameraSource(_Counters):
    """A V4L2 camera (index or /dev/videoN) or a network stream (RTSP/HTTP) through OpenCV.

    A read failure (counted as a skipped frame) closes the device and reopens
    it after a backoff that doubles up to ``max_backoff_s``; ``reconnects``
    counts how often. With
    ``max_retries`` set, giving up raises :class:`FerError` (systemd then
    restarts the service with its own pacing) instead of looping forever.

    With ``newest_only`` (``source.newest_frame``, the default) the camera is
    read by a thread of its own as fast as it delivers, and :meth:`frames`
    hands out the newest frame; the frames replaced before they were taken
    are counted (``superseded``). Read only as fast as the runtime processes,
    a network stream falls further behind the live picture with every frame
    (0.8 s more every second for a Pi at 5 frames a second on a 25 fps
    stream) until its buffers fill, and a local camera hands out the frames
    its driver queued (OpenCV asks V4L2 for 4) while the runtime was busy.
    """

    def __init__(self, spec: str | int, *, width: int | None = None, height: int | None = None,
                 max_retries: int | None = None, initial_backoff_s: float = INITIAL_BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S,
                 opener: Callable[[str | int], object] | None = None, sleep: Callable[[float], None] | None = None,
                 newest_only: bool = True):
        self.spec = spec
        self.newest_only = newest_only
        self.name = str(spec)
        self.width, self.height = width, height
        self.max_retries = max_retries
        self.initial_backoff_s, self.max_backoff_s = initial_backoff_s, max_backoff_s
        self.opener = opener or _open_capture  # replaced in tests: the camera is a hardware boundary
        self._closing = Closing()
        # The backoff wait ends early when close() is called (SIGTERM must not wait out a 30 s backoff).
        self.sleep = sleep or self._closing.wait
        self.capture = None
        self._closed = False

    def _open(self):
        capture = self.opener(self.spec)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            return None
        if self.width and self.height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return capture

    def frames(self) -> Iterator[Frame | None]:
        if self.newest_only:
            yield from self._newest_frames()
            return
        captures = self._captures()
        try:
            index = 0
            for capture in captures:
                if capture is None:  # waiting to reopen the camera: the loop's idle tick
                    yield None
                    continue
                yield Frame(capture[0], self.name, index, capture[1], capture[2])
                index += 1
        finally:  # the consumer closed (or dropped) this generator at a frame: release the device now
            captures.close()

    def _newest_frames(self) -> Iterator[Frame | None]:
        """The frames of a reader thread that reads the camera as fast as it delivers: each one the newest (None
        when none came for :data:`IDLE_TICK_S`)."""
        newest = _NewestCapture(self._closing)
        reader = threading.Thread(target=self._read_into, args=(newest,), name=f"camera reader {self.name}",
                                  daemon=True)
        reader.start()
        try:
            index = 0
            while True:
                try:
                    capture = newest.take(IDLE_TICK_S)
                except EOFError:
                    return
                if capture is None:
                    yield None
                    continue
                yield Frame(capture[0], self.name, index, capture[1], capture[2])
                index += 1
        finally:
            self.close()  # the reader stops after the read it is in, and releases the device itself
            reader.join(READER_JOIN_S)

    def _read_into(self, newest: _NewestCapture) -> None:
        """The reader thread: every capture into ``newest``; how it ended, too (an error is the consumer's to raise)."""
        try:
            for capture in self._captures():
                if capture is not None:  # None: waiting to reopen; the consumer has its own idle tick
                    self.superseded += newest.put(capture)
        except Exception as error:  # giving up (FerError) or an OpenCV failure: raised in the consumer's thread
            newest.end(error)
        else:
            newest.end(None)

    def _captures(self) -> Iterator[tuple[np.ndarray, float, float] | None]:
        """Each frame the camera delivers, with its capture times (wall clock, clock; see :class:`Frame`), reopening
        a lost camera with backoff (None at each idle tick of the wait) until closed; the device is released when
        this ends or is closed."""
        delivered = False
        backoff = _Backoff(f"camera {self.spec}", "check the cable/URL and that the user is in the 'video' group",
                           self.initial_backoff_s, self.max_backoff_s, self.max_retries, self.sleep)
        try:
            while not self._closed:
                if self.capture is None:
                    self.capture = self._open()
                    if self.capture is None:
                        self.connected = False
                        yield from backoff.failed()
                        continue
                    if delivered or backoff.failures > 0:
                        self.reconnects += 1
                        log.info("camera %s reconnected (%d reconnects)", self.spec, self.reconnects)
                ok, image = self.capture.read()
                if self._closed:
                    break
                if not ok or image is None:
                    log.warning("camera %s stopped delivering frames; reopening", self.spec)
                    self.skipped += 1
                    self.capture.release()
                    self.capture = None
                    self.connected = False
                    continue
                self.connected = delivered = True
                backoff.succeeded()
                yield image, *capture_times()
        finally:
            if self.capture is not None:
                self.capture.release()
                self.capture = None

    def close(self) -> None:
        """Stop after the current frame and wake a backoff wait at once (safe from a signal handler and from any
        thread). It never touches the device, which another thread may be reading: the frame loop releases it."""
        self._closed = True
        self._closing.set()


class Picamera2Source(_Counters):
    """The Raspberry Pi camera through picamera2, reading the cheap low-resolution YUV420 stream's Y (gray) plane.

    picamera2 is imported lazily: it exists only on Raspberry Pi OS (apt
    ``python3-picamera2``), reachable from a venv created with
    ``--system-site-packages``. A camera that is missing at start, or whose
    frontend times out mid-stream (picamera2 raises from ``capture_array``),
    is closed and reopened with the same backoff as :class:`CameraSource`
    (0.5 s doubling to ``max_backoff_s``, cut short by :meth:`close`); a lost
    capture counts as a skipped frame, a reopening as a reconnect.
    """

    def __init__(self, camera: int = 0, width: int = 640, height: int = 480, *, max_retries: int | None = None,
                 initial_backoff_s: float = INITIAL_BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S):
        self.camera_index, self.width, self.height = camera, width, height
        self.name = f"picamera2:{camera}"
        self.max_retries = max_retries
        self.initial_backoff_s, self.max_backoff_s = initial_backoff_s, max_backoff_s
        self.camera = None
        self._closed = False
        self._closing = Closing()

    def _open(self, picamera2_class):
        """A started camera, or None (logged) when it cannot be opened now."""
        camera = None
        try:
            camera = picamera2_class(self.camera_index)
            # The YUV420 "lores" stream costs the ISP little and its Y plane is the grayscale image the model needs.
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                lores={"size": (self.width, self.height), "format": "YUV420"})
            camera.configure(config)
            camera.start()
            return camera
        except (RuntimeError, IndexError, OSError) as error:  # no camera (IndexError), busy or failed to start
            log.warning("%s unavailable: %s: %s", self.name, error.__class__.__name__, error)
            if camera is not None:
                _release_picamera(camera)
            return None

    def frames(self) -> Iterator[Frame | None]:
        try:
            from picamera2 import Picamera2
        except ImportError as error:
            raise FerError("picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
                           "and create the venv with `python3 -m venv --system-site-packages`") from error
        index = 0
        backoff = _Backoff(self.name, "check the ribbon cable, `rpicam-hello --list-cameras`, and the 'video' group",
                           self.initial_backoff_s, self.max_backoff_s, self.max_retries, self._closing.wait)
        try:
            while not self._closed:
                if self.camera is None:
                    self.camera = self._open(Picamera2)
                    if self.camera is None:
                        self.connected = False
                        yield from backoff.failed()
                        continue
                    if index > 0 or backoff.failures > 0:
                        self.reconnects += 1
                        log.info("%s reconnected (%d reconnects)", self.name, self.reconnects)
                try:
                    yuv = self.camera.capture_array("lores")
                except RuntimeError as error:  # e.g. the frontend timed out: the sensor stopped sending
                    log.warning("%s stopped delivering frames (%s); reopening", self.name, error)
                    self.skipped += 1
                    self.connected = False
                    _release_picamera(self.camera)
                    self.camera = None
                    continue
                self.connected = True
                backoff.succeeded()
                # YUV420 planar: the first `height` rows are the luma (grayscale) plane; rows are padded past the
                # width to the stride, so the crop drops the padding.
                yield Frame(np.ascontiguousarray(yuv[: self.height, : self.width]), self.name, index, *capture_times())
                index += 1
        finally:
            if self.camera is not None:
                _release_picamera(self.camera)
                self.camera = None

    def close(self) -> None:
        """Stop after the current frame (safe from a signal handler): cuts a backoff wait short."""
        self._closed = True
        self._closing.set()


def _release_picamera(camera) -> None:
    """Stop and close a picamera2 camera, whatever state it is in (a failed one may refuse to stop)."""
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception as error:  # a camera that failed mid-stream can fail to stop too; closing must go on
            log.debug("picamera2 %s failed: %s", step.__name__, error)


def is_camera(spec: str) -> bool:
    """Whether ``spec`` names a camera or a stream (``picamera2[:N]``, an index, ``/dev/videoN``, a URL)."""
    return spec.startswith(("picamera2", "/dev/video")) or spec.isdigit() or bool(STREAM_PATTERN.match(spec))


def is_moving(spec: str) -> bool:
    """Whether ``spec`` names moving pictures (a camera, a stream, a video file) rather than stills."""
    return is_camera(spec) or (Path(spec).is_file() and Path(spec).suffix.lower() not in IMAGE_SUFFIXES)


def never_ends(spec: str, loop: bool) -> bool:
    """Whether the moving pictures ``spec`` names run until they are stopped: a camera, a stream, a looped video."""
    return is_camera(spec) or (loop and is_moving(spec))


def open_source(spec: str, *, loop: bool = False, camera_retries: int | None = None,
                realtime: bool = False, max_pixels: int = 0, newest_frame: bool = True,
                max_backoff_s: float = MAX_BACKOFF_S) -> FrameSource:
    """Pick a source from a spec: ``picamera2[:N]``, a camera index, ``/dev/videoN``, a stream URL, or a path."""
    if spec.startswith("picamera2"):
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return Picamera2Source(index, max_retries=camera_retries, max_backoff_s=max_backoff_s)
    if is_camera(spec):
        return CameraSource(int(spec) if spec.isdigit() else spec, max_retries=camera_retries,
                            max_backoff_s=max_backoff_s, newest_only=newest_frame)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, loop=loop, max_pixels=max_pixels)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFileSource(path, max_pixels=max_pixels)
        return VideoFileSource(path, loop=loop, realtime=realtime)
    raise FerError(f"source.spec: {spec!r} not found: give an image, a folder, a video file, a camera index, "
                   "/dev/videoN, an rtsp:// or http:// URL, or picamera2")


@dataclass(frozen=True)
class SourceConfig:
    """The ``[source]`` section: where frames come from and how they are paced."""

    spec: str = setting("0", "image, folder, video file, camera index, /dev/videoN, rtsp:// or http:// URL, "
                        "or picamera2[:N]")
    loop: bool = setting(False, "replay a video file or folder endlessly (soak tests, demos)")
    camera_retries: int = setting(-1, "reopen attempts before giving up on a camera (-1 = forever, with backoff)",
                                  minimum=-1)
    max_backoff_s: float = setting(MAX_BACKOFF_S, "longest wait between attempts to reopen a lost camera (the wait "
                                   f"starts at {INITIAL_BACKOFF_S} s and doubles): lower finds a camera that came back "
                                   "sooner and logs a line per attempt more often", minimum=INITIAL_BACKOFF_S,
                                   maximum=3600.0)
    max_frames: int = setting(0, "stop after this many frames (0 = no limit)", minimum=0)
    max_pixels: int = setting(50_000_000, "skip images whose header claims more pixels than this, before decoding "
                              "(a small file can decode to gigabytes); 0 = OpenCV's own limit only", minimum=0)
    realtime: bool = setting(False, "play a video file at its own frame rate, as a camera delivers frames (demos, "
                             "live-view checks); off = as fast as it decodes (batch work)")
    newest_frame: bool = setting(True, "read a camera or stream in a thread of its own and process its newest frame "
                                 "(live); off = read a frame only when ready for one: frames skipped are never "
                                 "decoded, but the picture lags (a stream further behind every second)")
