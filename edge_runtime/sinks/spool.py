"""A durable, append-only spool for messages the MQTT sink could not deliver (Mosquitto-style persistence).

One message per line (``topic``, ``retain`` and ``payload`` as JSON), appended with one ``os.write`` each, so a
killed process loses at most the line it was writing; ``fsync`` runs in batches. On opening, a torn last line (no
newline, or not JSON) is cut off and counted. A bad line anywhere else (a disk that filled mid-write, a hand edit) is
set aside when it is read: appended to ``<spool>.quarantine``, counted and logged, and reading goes on with the next
line, so one bad line never stops delivery. The spool is bounded: an append that would pass ``max_bytes`` is
refused and the caller counts the drop.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

# What a bad line may raise while it is decoded: not JSON or not UTF-8 (ValueError), not an object (TypeError), or an
# object without the message's keys (KeyError).
BAD_LINE_ERRORS = (ValueError, TypeError, KeyError)

log = logging.getLogger(__name__)


class SpooledMessage(NamedTuple):
    topic: str
    payload: str
    retain: bool


def _decode(line: bytes) -> SpooledMessage:
    """One spool line back into its message (the inverse of :meth:`Spool.append`'s encoding)."""
    record = json.loads(line)
    return SpooledMessage(record["topic"], record["payload"], bool(record["retain"]))


class Spool:
    """Undelivered messages on disk, oldest first."""

    def __init__(self, path: str | Path, max_bytes: int, sync_every: int = 50):
        self.path = Path(path)
        self.max_bytes, self.sync_every = max_bytes, sync_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = self._recover()
        self.quarantine_path = self.path.with_name(self.path.name + ".quarantine")
        self.quarantined = 0  # bad lines set aside since opening
        self._quarantined_at: set[int] = set()  # their offsets (a line re-read after a reconnect is counted once)
        self.refusal = ""  # why the last refused append was refused
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.size = os.fstat(self._fd).st_size
        self._unsynced = 0

    def _recover(self) -> int:
        """Cut a torn last line off; returns how many lines were lost (0 or 1)."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1  # everything up to the last newline was written whole
        torn = 1 if good < len(data) else 0
        if good:  # the last complete line must also be a message (a kill can land mid-line only at the end)
            last_start = data.rfind(b"\n", 0, good - 1) + 1
            try:
                json.loads(data[last_start:good])
            except ValueError:
                good, torn = last_start, torn + 1
        if good < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())
            log.error("spool %s: %d torn message(s) at the end (a crash while writing) could not be recovered",
                      self.path, torn)
        return torn

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        """The number of lines in the spool file (a bad line counts until it is read and set aside)."""
        with open(self.path, "rb") as handle:
            return sum(1 for _ in handle)

    def append(self, message: SpooledMessage) -> bool:
        """Append one message whole, or not at all: False when the spool is full or the disk refuses the write
        (:attr:`refusal` says which); a short write is rolled back, so no torn line is left behind."""
        line = (json.dumps({"topic": message.topic, "retain": message.retain, "payload": message.payload},
                           separators=(",", ":")) + "\n").encode()
        if self.size + len(line) > self.max_bytes:
            self.refusal = f"full (mqtt.spool_max_bytes = {self.max_bytes})"
            return False
        try:
            written = os.write(self._fd, line)
        except OSError as error:  # ENOSPC, EIO, EDQUOT...: nothing was written
            self.refusal = f"not writable ({error.strerror})"
            return False
        if written != len(line):  # a short write (the disk filled mid-line): take the part back
            os.ftruncate(self._fd, self.size)
            self.refusal = f"not writable (a short write: {written} of {len(line)} bytes; disk full?)"
            return False
        self.size += len(line)
        self._unsynced += 1
        if self._unsynced >= self.sync_every:
            self.sync()
        return True

    def sync(self) -> None:
        """Flush the appended messages to the disk (``fsync``), if any were appended since the last sync."""
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0

    def read_from(self, offset: int, limit: int) -> tuple[list[tuple[SpooledMessage, int, int]], int]:
        """Up to ``limit`` messages from byte ``offset`` on, as ``(message, start, end)`` with their byte range, and
        the offset to read on from (past any bad lines that were set aside)."""
        found = []
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            position = offset
            for line in handle:
                if not line.endswith(b"\n") or len(found) >= limit:
                    break
                try:
                    found.append((_decode(line), position, position + len(line)))
                except BAD_LINE_ERRORS as error:
                    self._set_aside(line, position, error)
                position += len(line)
        return found, position

    def read_all(self) -> list[SpooledMessage]:
        """Every message in the spool, oldest first (bad lines set aside)."""
        messages, offset = [], 0
        while True:
            batch, offset = self.read_from(offset, 10_000)
            if not batch:
                return messages
            messages += [message for message, _, _ in batch]

    def _set_aside(self, line: bytes, position: int, error: Exception) -> None:
        """Append a bad line to the quarantine file, count it and log it (once per line)."""
        if position in self._quarantined_at:
            return
        self._quarantined_at.add(position)
        self.quarantined += 1
        with open(self.quarantine_path, "ab") as side:
            side.write(line)
        log.error("spool %s: the line at byte %d is not a message (%s: %s); set aside in %s, delivery goes on",
                  self.path, position, error.__class__.__name__, str(error)[:120], self.quarantine_path)

    def clear(self) -> None:
        """Empty the spool (its messages were delivered or taken back into memory)."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.size, self._unsynced = 0, 0
        self._quarantined_at.clear()

    def close(self) -> None:
        """Sync what was appended and close the file; the messages stay for the next start."""
        self.sync()
        os.close(self._fd)
