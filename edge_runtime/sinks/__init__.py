"""Where events go: stdout JSON lines (the journal), a size-rotated JSONL file, and MQTT (:mod:`.mqtt`).

Every sink follows the :class:`Sink` protocol. A sink never raises into the
processing loop (the pipeline guards that too, and counts failures); the MQTT
sink buffers while the broker is away (in memory, or on disk in a :mod:`.spool`)
and counts, and logs, what it had to drop.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from edge_runtime.core.records import JsonRecord, setting

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the pipeline hands each event."""

    name: str  # labels its metrics and log lines

    @property
    def dropped(self) -> int:
        """Events this sink had to throw away (a full buffer, say)."""

    @property
    def connected(self) -> bool:
        """Whether events reach their destination now (a local sink always; MQTT while the broker is there)."""

    @property
    def fault(self) -> str:
        """Why the sink cannot deliver even with its destination there (its sender crashed and restarts); empty
        while it works."""

    def __call__(self, event: JsonRecord) -> None:
        """Take one event; must return quickly (the processing loop waits for it)."""

    def flush(self, timeout: float = ...) -> bool:
        """Deliver what is buffered within ``timeout`` seconds; whether everything went out."""

    def close(self) -> None:
        """Flush and release the sink's resources."""


def event_line(event: JsonRecord) -> str:
    """The event as one compact JSON line (what stdout, the file and MQTT carry)."""
    return json.dumps(event.to_json(), separators=(",", ":")) + "\n"


class _LocalSink:
    """What every in-process sink shares: it never drops, is always connected, and closes by flushing."""

    dropped = 0
    connected = True
    fault = ""

    def flush(self, timeout: float = 0.0) -> bool:
        return True

    def close(self) -> None:
        self.flush()


class CallbackSink(_LocalSink):
    """Hands each event to a function: for programs that embed the runtime (and for tests and benchmarks)."""

    def __init__(self, callback: Callable[[JsonRecord], None], name: str = "callback"):
        self.callback, self.name = callback, name

    def __call__(self, event: JsonRecord) -> None:
        self.callback(event)


class StdoutSink(_LocalSink):
    """One JSON line per event on stdout, flushed at once (journald and pipes see it immediately)."""

    name = "stdout"

    def __call__(self, event: JsonRecord) -> None:
        sys.stdout.write(event_line(event))
        sys.stdout.flush()

    def flush(self, timeout: float = 0.0) -> bool:
        sys.stdout.flush()
        return True


class RotatingFileSink(_LocalSink):
    """JSON lines appended to a file, rotated to ``file.1`` .. ``file.N`` when it passes ``max_bytes``."""

    name = "file"

    def __init__(self, path: str | Path, max_bytes: int = 10_000_000, backups: int = 5):
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def __call__(self, event: JsonRecord) -> None:
        self._handle.write(event_line(event))
        if self._handle.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._handle.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._handle = open(self.path, "a", encoding="utf-8")

    def flush(self, timeout: float = 0.0) -> bool:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return True

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()


@dataclass(frozen=True)
class SinksConfig:
    """The ``[sinks]`` section: the local sinks (stdout and the rotating file; MQTT has its own section)."""

    stdout: bool = setting(True, "one JSON line per event on stdout (the journal under systemd)")
    file: str = setting("", "append JSON lines to this file, size-rotated (empty = off)")
    file_max_bytes: int = setting(10_000_000, "rotate the file when it reaches this size", minimum=1024)
    file_backups: int = setting(5, "rotated files to keep", minimum=0)
