"""systemd's notify protocol (``Type=notify``): READY, WATCHDOG, STOPPING and STATUS datagrams.

The few lines of the protocol, without a dependency: systemd passes a unix
datagram socket path in ``NOTIFY_SOCKET`` (a leading ``@`` means the abstract
namespace) and the watchdog period in ``WATCHDOG_USEC``. Outside systemd both
are unset and every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages when run by systemd; silently does nothing otherwise."""

    def __init__(self, environ: dict | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() else None
        # Not blocking: a receiver that does not read (its queue holds a few datagrams) must not stall the loop, or
        # SIGTERM's handler, which sends STOPPING=1; a message it has no room for is logged and lost.
        self._socket = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        self._last_watchdog = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str, *, quiet: bool = False) -> None:
        """Send one raw notify message (``KEY=value`` lines); a failure is logged unless ``quiet`` (a signal
        handler's send: logging there could land inside the main thread's own log write and raise in it)."""
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError as error:  # the service must not die because systemd went away
            if not quiet:
                log.warning("sd_notify %r failed: %s", message, error)

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, *, quiet: bool = False) -> None:
        self.send("STOPPING=1", quiet=quiet)

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog, at most twice per watchdog period (systemd's recommendation)."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog >= self.watchdog_interval / 2:
            self.send("WATCHDOG=1")
            self._last_watchdog = now

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
