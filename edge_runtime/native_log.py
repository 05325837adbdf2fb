"""What C libraries print (OpenCV, libjpeg, FFmpeg, LiteRT), routed through :mod:`logging` in the runtime's format.

They write to file descriptor 2 directly, so their lines would land in the journal bare, between ours, and some
(a damaged video's FFmpeg decode errors, libjpeg's "Premature end of JPEG file") repeat what the runtime reports
itself in one counted line. While :func:`native_output_to_log` is active, descriptor 2 is a pipe read by a thread
that logs each line under a logger named after its library; Python's own stderr and the log handlers keep writing
to the real stderr.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

# (pattern, logger, level): the first match names where a line comes from and how much it matters.
_SOURCES = (
    (re.compile(r"^\[\s*ERROR:"), "opencv", logging.ERROR),
    (re.compile(r"^\[\s*WARN:"), "opencv", logging.WARNING),
    (re.compile(r"^\[\s*(INFO|DEBUG|VERBOSE):"), "opencv", logging.DEBUG),
    # Decode errors of a damaged stretch: the video source counts the frames it skips and says so.
    (re.compile(r"^\[\w+ @ 0x[0-9a-f]+\]"), "ffmpeg", logging.DEBUG),
    # A truncated or corrupt JPEG: the image source reports truncation itself.
    (re.compile(r"JPEG"), "libjpeg", logging.DEBUG),
    # A corrupt PNG: the image source skips it with its own line.
    (re.compile(r"^libpng "), "libpng", logging.DEBUG),
    (re.compile(r"^INFO: "), "litert", logging.DEBUG),
)
MAX_LINE = 500  # a library line longer than this is cut (a binary dump must not flood the journal)


def classify(line: str) -> tuple[str, int]:
    """The logger name and level for one line a library printed."""
    for pattern, name, level in _SOURCES:
        if pattern.search(line):
            return name, level
    return "native", logging.WARNING


def _pump(read_fd: int) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            try:
                name, level = classify(line)
                logging.getLogger(name).log(level, "%s", line[:MAX_LINE])
            except Exception:  # noqa: BLE001 - the pump must keep draining, or the libraries block on a full pipe
                pass


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def native_output_to_log() -> Iterator[None]:
    """Route what libraries write to descriptor 2 through logging until the block ends (then restore it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    real_stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    previous_stderr = sys.stderr
    if _is_fd2(previous_stderr):
        sys.stderr = real_stderr  # tracebacks and prints bypass the pipe
    handlers = [h for h in logging.root.handlers if isinstance(h, logging.StreamHandler) and _is_fd2(h.stream)]
    previous_streams = [handler.setStream(real_stderr) for handler in handlers]
    pump = threading.Thread(target=_pump, args=(read_fd,), name="native-log", daemon=True)
    # The pump is born with SIGTERM and SIGINT blocked (a thread inherits the mask), so the kernel hands them to the
    # main thread, where Python runs their handlers, and never interrupts the pump's read.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        pump.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    try:
        yield
    finally:
        os.dup2(saved, 2)  # the pipe's last writer is gone: the pump reads to its end and stops
        os.close(saved)
        pump.join(2.0)
        for handler, stream in zip(handlers, previous_streams, strict=True):
            handler.setStream(stream)
        sys.stderr = previous_stderr
        real_stderr.close()
