"""The MQTT sink: events published with QoS 1 over a supervised connection, buffered while the broker is away.

Three parts: the connection (paho-mqtt, reconnecting with a backoff, TLS by :func:`tls_context`), the delivery
queue (memory up to ``buffer_size``, or an append-only :class:`~edge_runtime.sinks.spool.Spool` on disk), and any
:class:`Companion` that rides on the same connection (Home Assistant's discovery, availability and state, built by
the service from :mod:`edge_runtime.homeassistant`), which the transport carries without knowing what it says.
"""

from __future__ import annotations

import collections
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from edge_runtime.core.errors import ConfigError
from edge_runtime.core.publication import Publication
from edge_runtime.core.records import JsonRecord, setting
from edge_runtime.sinks import event_line
from edge_runtime.sinks.spool import Spool, SpooledMessage

log = logging.getLogger(__name__)


def _connect_error(host: str, port: int, tls: ssl.SSLContext | None = None) -> str:
    """Why a connection to ``host:port`` fails right now (paho's connect-failure callback does not say): the TCP
    error, or with TLS the handshake's (an unknown CA, a wrong host name, a plain-text port)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=2.0) as connection:
            if tls is not None:
                with tls.wrap_socket(connection, server_hostname=host):
                    pass
            return "the connection closed during the MQTT handshake"
    except ssl.SSLCertVerificationError as error:
        return (f"TLS handshake failed: the broker's certificate did not verify ({error.verify_message}); check "
                "mqtt.tls_ca_file and that mqtt.host is a name the broker's certificate carries")
    except ssl.SSLError as error:
        return f"TLS handshake failed: {error.reason or error} (is mqtt.port the broker's TLS port?)"
    except OSError as error:
        return f"{error.__class__.__name__}: {error.strerror or error}"


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS connection to the broker trusts and shows: PEM files (empty: the system's CA store, no client
    certificate)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""  # empty: the key is in cert_file
    verify: bool = True  # check the broker's certificate and host name (off only for a test broker)


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """An SSL context for the broker connection; a :class:`ConfigError` naming the key of a file that cannot be
    used."""
    try:
        context = ssl.create_default_context(cafile=files.ca_file or None)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"mqtt.tls_ca_file: cannot load CA certificates from {files.ca_file!r}: "
                          f"{getattr(error, 'strerror', None) or error}; give a PEM file") from error
    if files.cert_file:
        try:
            context.load_cert_chain(files.cert_file, files.key_file or None)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"mqtt.tls_cert_file: cannot load the client certificate {files.cert_file!r} with key "
                              f"{files.key_file or '(in the same file)'!r}: "
                              f"{getattr(error, 'strerror', None) or error}; "
                              "give PEM files whose key matches the certificate") from error
    if not files.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class MqttOptions:
    """``[mqtt]``: the MQTT sink's own options (the config schema's section is this class)."""

    host: str = setting("", "broker host (empty = MQTT off)")
    port: int = setting(1883, "broker port", minimum=1, maximum=65535)
    topic: str = setting("fer/events", "topic events are published to")
    qos: int = setting(1, "MQTT quality of service", choices=(0, 1, 2))
    client_id: str = setting("", "fixed client id for a persistent session (empty = a fresh one each start)")
    username: str = setting("", "user name (empty = anonymous)")
    password_file: str = setting("", "file holding the password, mode 0600 (keep it out of the config)")
    password_env: str = setting("", "name of an environment variable holding the password (e.g. from systemd's "
                                "EnvironmentFile=); used when mqtt.password_file is empty")
    tls: bool = setting(False, "connect with TLS (brokers listen for it on port 8883); the broker's certificate and "
                        "host name are checked against mqtt.tls_ca_file, or the system's CAs")
    tls_ca_file: str = setting("", "PEM file of the CA(s) that signed the broker's certificate (empty = the system's)")
    tls_cert_file: str = setting("", "client certificate (PEM) for brokers that require one (empty = none)")
    tls_key_file: str = setting("", "the client certificate's private key (PEM, mode 0600; empty = in tls_cert_file)")
    tls_verify: bool = setting(True, "check the broker's certificate and host name; false only for a test broker "
                               "(the connection is then encrypted but not authenticated)")
    buffer_size: int = setting(10_000, "events kept in memory while the broker is away (or, with a spool, while the "
                               "spool cannot take them); beyond it events are dropped and counted", minimum=1)
    keepalive: int = setting(30, "keep-alive seconds", minimum=5)
    max_backoff_s: int = setting(30, "longest wait between reconnect attempts", minimum=1)
    spool_file: str = setting("", "keep events the broker cannot take on disk here (append-only, fsync'd in batches) "
                              "and send them first at reconnection or the next start (empty = memory only)")
    spool_max_bytes: int = setting(100_000_000, "the spool's size limit; beyond it new events are dropped and counted",
                                   minimum=1024)
    discovery: bool = setting(True, "announce the runtime to Home Assistant (MQTT discovery, retained) with an "
                              "availability topic and last will; its sensors follow output.mode changes or summary")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix")
    node_id: str = setting("fer_edge", "this device's id in topics and Home Assistant ids (one per camera)")



# The broker's answers to a CONNECT that mean "wrong credentials", as paho names them (MQTT 3.1.1 and 5).
LOGIN_REFUSALS = frozenset({"Bad user name or password", "Not authorized"})


class Companion(Protocol):
    """Messages that ride on the sink's connection besides the events (Home Assistant's, for one): all retained,
    QoS 1. The sink decides when; the companion decides what."""

    def last_will(self) -> Publication:
        """What the broker publishes when the connection drops without a clean disconnect."""

    def on_connect(self) -> list[Publication]:
        """Sent on every (re)connection, before any event."""

    def on_record(self, record: JsonRecord) -> list[Publication]:
        """Sent after the event ``record`` (empty when it changes nothing the companion reports)."""

    def on_source(self, delivering: bool) -> list[Publication]:
        """Sent when the camera stops delivering frames, or delivers again (empty when that changes nothing)."""

    def on_clean_stop(self) -> list[Publication]:
        """Sent at a clean stop while connected (the last will is for crashes)."""


class Message(NamedTuple):
    """One MQTT publication waiting in the sink's buffer."""

    topic: str
    payload: str
    retain: bool = False
    spool_start: int = -1  # where it starts in the spool file (-1: not from the spool)


class DeliveryQueue:
    """What waits to be delivered, in the order it was made, and what was sent but not yet acknowledged.

    Without a spool: a memory queue of at most ``buffer_size`` messages (the
    oldest is dropped, and counted, when it is full). With a spool nothing
    waits in memory while the broker is away: it goes to disk, in order. While
    the spool holds anything, new messages are appended to it too, and the
    sender streams it back in batches; once everything in it is acknowledged
    it is emptied and messages flow through memory again. Messages the spool
    refuses (full, or the disk is) wait in an overflow in memory, up to
    ``buffer_size``, and go after it; beyond that they are dropped and counted.

    Not thread-safe: the sink calls every method under its lock.
    """

    def __init__(self, buffer_size: int, spool: Spool | None = None):
        self.buffer_size = buffer_size
        self.spool = spool
        self.queue: collections.deque[Message] = collections.deque()
        self.pending: dict[int, Message] = {}  # published, not yet acknowledged (kept to spool them if need be)
        self.overflow: collections.deque[Message] = collections.deque()
        self.dropped = 0
        self.published = 0
        self.acknowledged = 0
        self._spool_offset = 0  # how far the sender has read the spool
        self._spool_unacknowledged = 0  # messages read from the spool and not yet acknowledged
        self._spool_full = False
        if spool is not None and spool.size:
            log.info("MQTT: %d messages spooled by an earlier run will be sent first (%s)", spool.count(), spool.path)

    def add(self, messages: list[Message], *, connected: bool, closing: bool) -> None:
        """Queue ``messages``: with a spool, to disk while the broker is away or the spool is being sent (not once
        the sink is closing); otherwise to memory."""
        if self.spool is not None and not closing and (not connected or self.spool.size or self.overflow):
            for message in messages:  # the broker is away, or the spool is being sent: to disk, in order
                self._spool_append(message)
            return
        for message in messages:
            if len(self.queue) >= self.buffer_size:
                self.queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("MQTT buffer full (%d events): dropped %d events so far", self.buffer_size,
                              self.dropped)
            self.queue.append(message)

    def has_work(self) -> bool:
        """Whether anything waits to be sent (in memory, unread in the spool, or overflow due)."""
        return bool(self.queue) or self._spool_unread() or self._overflow_due()

    def next_message(self) -> Message | None:
        """The message to send next (it stays queued until :meth:`sent`), refilling from the overflow or the spool;
        ``None`` when the spool had nothing whole left to read."""
        if not self.queue and self._overflow_due():
            self.queue.extend(self.overflow)
            self.overflow.clear()
        if not self.queue:  # the next batch from the spool, in order
            batch, self._spool_offset = self.spool.read_from(self._spool_offset, 500)
            self.queue.extend(Message(m.topic, m.payload, m.retain, start) for m, start, _ in batch)
            self._spool_unacknowledged += len(batch)
            if not batch:  # nothing whole left (an unterminated tail is skipped, as a torn line is)
                self._spool_offset = self.spool.size
                return None
        return self.queue[0]

    def sent(self, mid: int | None) -> None:
        """The head of the queue was published: awaiting the acknowledgement ``mid`` (``None``: QoS 0, none comes)."""
        message = self.queue.popleft()
        self.published += 1
        if mid is None:
            self.acknowledged += 1
        else:
            self.pending[mid] = message

    def delivered(self, mid: int, closing: bool) -> None:
        """The broker acknowledged ``mid``; once all the spool held is acknowledged the spool is emptied."""
        message = self.pending.pop(mid, None)
        if message is None:
            return
        self.acknowledged += 1
        if message.spool_start >= 0 and not closing:  # (a closed spool is left as it was written)
            self._spool_unacknowledged -= 1
            if not self._spool_unacknowledged and self._spool_offset >= self.spool.size:
                self.spool.clear()  # everything in it has been delivered: back to memory
                self._spool_offset = 0

    def outstanding(self, connected: bool) -> bool:
        """Whether a flush must still wait: queued or unacknowledged messages, or (while connected) a spool or
        overflow still to send."""
        return bool(self.queue or self.pending or (connected and (self._spool_unread() or self.overflow)))

    def take_back(self) -> None:
        """The broker went away (or the sink stops): nothing undelivered stays only in memory (with a spool).

        Messages read from the spool are still in it: reading restarts at the
        first of them. Messages that never were (sent while the spool was empty)
        are appended, unacknowledged first, then queued: the order they were made.
        """
        undelivered = [*self.pending.values(), *self.queue]
        starts = [m.spool_start for m in undelivered if m.spool_start >= 0]
        if starts:
            self._spool_offset = min(starts)
        elif self.spool.size and self._spool_offset >= self.spool.size and not self._spool_unacknowledged:
            self.spool.clear()
            self._spool_offset = 0
        for message in undelivered:
            if message.spool_start < 0:
                self._spool_append(message)
        self.spool.sync()
        self.pending.clear()
        self.queue.clear()
        self._spool_unacknowledged = 0

    def close(self) -> int:
        """At stop, with a spool: everything undelivered to disk (what it cannot take is lost and counted); the
        number of messages it holds."""
        self.take_back()
        self._overflow_to_spool()
        if self.overflow:
            self.dropped += len(self.overflow)
            log.error("MQTT: %d events lost at stop: the spool %s could not take them (%s)", len(self.overflow),
                      self.spool.path, self.spool.refusal)
            self.overflow.clear()
        spooled = self.spool.count() if self.spool.size else 0
        self.spool.close()
        return spooled

    def _spool_append(self, message: Message) -> None:
        """To the spool, in order; while it refuses (full, or the disk is), to the overflow in memory; beyond that,
        dropped and counted."""
        self._overflow_to_spool()
        if not self.overflow and self._spool_takes(message):
            self._spool_full = False
            return
        if not self._spool_full:
            log.error("MQTT spool %s is %s: keeping up to %d new events in memory until it takes them again, and "
                      "dropping (and counting) beyond", self.spool.path, self.spool.refusal, self.buffer_size)
        self._spool_full = True
        if len(self.overflow) < self.buffer_size:
            self.overflow.append(message)
            return
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error("MQTT: the spool and the memory buffer are full: dropped %d events so far", self.dropped)

    def _spool_takes(self, message: Message) -> bool:
        return self.spool.append(SpooledMessage(message.topic, message.payload, message.retain))

    def _overflow_to_spool(self) -> None:
        """Move what waits in the overflow into the spool, oldest first, while it takes them."""
        while self.overflow and self._spool_takes(self.overflow[0]):
            self.overflow.popleft()

    def _spool_unread(self) -> bool:
        return self.spool is not None and self._spool_offset < self.spool.size

    def _overflow_due(self) -> bool:
        """The spool is delivered and empty, and messages it refused wait in memory: they go next."""
        return bool(self.overflow) and not self.spool.size


class MqttSink:
    """Publishes events with QoS 1 (by default) to a topic; buffers while the broker is away.

    paho-mqtt reconnects in its own thread with a backoff of 1 s doubling up to
    ``max_backoff_s``. Events wait in a :class:`DeliveryQueue` (memory, or a
    spool on disk) until a connection is up; what it drops is counted in
    ``dropped`` and logged. ``flush`` waits until everything queued has been
    acknowledged.
    The sender thread is supervised: if it raises, it is restarted with a
    backoff, counted in ``sender_restarts``, and ``fault`` says why until it
    delivers again. With ``tls`` (see :func:`tls_context`) the connection is
    encrypted and the broker's certificate checked.
    """

    name = "mqtt"

    # Defaults are the [mqtt] section's (MqttOptions), defined once there.
    def __init__(self, host: str, port: int = MqttOptions.port, topic: str = MqttOptions.topic, *,
                 qos: int = MqttOptions.qos, client_id: str = MqttOptions.client_id,
                 buffer_size: int = MqttOptions.buffer_size, keepalive: int = MqttOptions.keepalive,
                 username: str = MqttOptions.username, password: str = "",
                 max_backoff_s: int = MqttOptions.max_backoff_s, companion: Companion | None = None,
                 spool: Spool | None = None, tls: ssl.SSLContext | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as error:
            raise ConfigError("the MQTT sink needs paho-mqtt: pip install 'fer-edge[service]'") from error
        self.host, self.port, self.tls = host, port, tls
        self.topic, self.qos = topic, qos
        self.max_backoff_s = max_backoff_s
        self.sender_restarts = 0  # times the sender thread raised and was restarted
        self._fault = ""  # why the sender last crashed, until it delivers again
        self.failed_attempts = 0  # connection attempts that failed since the last success
        self.refused_login = False  # the last attempt was refused for its credentials
        self.companion = companion
        self.buffer_size = buffer_size
        self.delivery = DeliveryQueue(buffer_size, spool)
        self._lock = threading.Condition()
        self._connected = False
        self._closing = False
        self._mqtt = mqtt
        self.client = self._make_client(client_id, username, password)
        self.client.connect_async(host, port, keepalive)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._supervise, name="mqtt-sender", daemon=True)
        self._sender.start()

    def _make_client(self, client_id: str, username: str, password: str):
        """The paho client: a persistent session with a fixed ``client_id``, credentials, TLS, the companion's last
        will, a reconnect backoff, and the callbacks that drive this sink."""
        mqtt = self._mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"fer-edge-{os.getpid()}",
                             clean_session=not client_id)
        if username:
            client.username_pw_set(username, password or None)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        if self.companion is not None:
            # The broker publishes this when the connection drops without a clean disconnect (a crash, a power cut).
            will = self.companion.last_will()
            client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        client.reconnect_delay_set(min_delay=1, max_delay=self.max_backoff_s)
        client.connect_timeout = 2.0  # an unreachable broker must not hold a connect attempt for long
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    @classmethod
    def from_options(cls, options: MqttOptions, *, password: str = "", companion: Companion | None = None,
                     spool: Spool | None = None, tls: ssl.SSLContext | None = None) -> "MqttSink":
        """The sink the ``[mqtt]`` section describes (the secrets, spool and companion come built)."""
        o = options
        return cls(o.host, o.port, o.topic, qos=o.qos, client_id=o.client_id, buffer_size=o.buffer_size,
                   keepalive=o.keepalive, username=o.username, password=password, max_backoff_s=o.max_backoff_s,
                   companion=companion, spool=spool, tls=tls)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def spool(self) -> Spool | None:
        return self.delivery.spool

    @property
    def queue(self) -> collections.deque[Message]:
        """What waits in memory to be sent."""
        return self.delivery.queue

    @property
    def dropped(self) -> int:
        return self.delivery.dropped

    @property
    def published(self) -> int:
        return self.delivery.published

    @property
    def acknowledged(self) -> int:
        return self.delivery.acknowledged

    @property
    def fault(self) -> str:
        return self._fault

    def _supervise(self) -> None:
        """Run the send loop; when it raises, log it, take back what was in flight, and restart it after a backoff."""
        delay = 1.0
        while True:
            try:
                self._send_loop()
                return
            except Exception as error:  # any bug or I/O error: delivery must not stop for good
                self._fault = f"{error.__class__.__name__}: {str(error)[:200]}"
                log.error("MQTT sender crashed (%s); restarting it in %.0f s (%d restarts)", self._fault, delay,
                          self.sender_restarts + 1, exc_info=self.sender_restarts == 0)
                self.sender_restarts += 1  # counted once logged: whoever sees the count finds the line
                with self._lock:
                    if self.spool is not None and not self._closing:
                        try:
                            # In-flight messages are read again from the spool (at least once).
                            self.delivery.take_back()
                        except Exception as spool_error:  # the spool may be what failed: retry it after the wait
                            log.error("MQTT: could not take the in-flight messages back to the spool: %s", spool_error)
                    self._lock.wait(delay)
                    if self._closing:
                        return
                delay = min(delay * 2, float(self.max_backoff_s))

    def _recovered(self) -> None:
        """The sender works again: clear the fault. Under lock."""
        if self._fault:
            log.warning("MQTT sender recovered after %d restarts (last fault: %s)", self.sender_restarts, self._fault)
            self._fault = ""

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._connected = not reason_code.is_failure
            self._lock.notify_all()
        if reason_code.is_failure:
            refused = reason_code.getName() in LOGIN_REFUSALS
            if refused:
                self._failed(f"the broker refused the login ({reason_code}): check mqtt.username and the password "
                             "in mqtt.password_file (or mqtt.password_env)", refused=True)
            else:
                self._failed(f"the broker refused the connection: {reason_code}")
            self.refused_login = refused  # set once it is logged: whoever sees the flag finds the line
            return
        self.refused_login = False
        after = f" after {self.failed_attempts} failed attempts" if self.failed_attempts else ""
        self.failed_attempts = 0
        if self.companion is not None:  # e.g. announce the device again on every (re)connection
            for publication in self.companion.on_connect():
                client.publish(publication.topic, publication.payload, qos=1, retain=publication.retain)
        log.info("MQTT connected to %s:%d%s; %d events queued", self.host, self.port, after, len(self.queue))

    def _on_connect_fail(self, client, userdata):
        self._failed(None)

    def _failed(self, reason: str | None, refused: bool = False) -> None:
        """Count a failed connection attempt; log the first of a streak, with why (then every 100th)."""
        self.failed_attempts += 1
        if self.failed_attempts == 1 or self.failed_attempts % 100 == 0:
            reason = reason or _connect_error(self.host, self.port, self.tls)
            log.error("MQTT broker %s:%d %s: %s (%d failed attempts; retrying with backoff, events are buffered)",
                      self.host, self.port, "refused us" if refused else "unreachable", reason, self.failed_attempts)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            was_connected, self._connected = self._connected, False
            if self.spool is not None and not self._closing:
                self.delivery.take_back()
        if not was_connected and not self._closing:  # closed before the broker accepted us: a failed attempt
            hint = " (it may require a client certificate: mqtt.tls_cert_file)" if self.tls is not None else ""
            self._failed(f"the broker closed the connection before accepting it{hint}")
        elif not self._closing:
            where = f"spooling to {self.spool.path}" if self.spool is not None else \
                f"buffering up to {self.buffer_size} events in memory"
            log.warning("MQTT disconnected (%s); %s and reconnecting", reason_code, where)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            self.delivery.delivered(mid, self._closing)
            self._lock.notify_all()

    def __call__(self, event: JsonRecord) -> None:
        messages = [Message(self.topic, event_line(event).rstrip("\n"))]
        if self.companion is not None:  # e.g. the Home Assistant sensors' state, retained
            messages += [Message(*publication) for publication in self.companion.on_record(event)]
        self._enqueue(messages)

    def source_changed(self, delivering: bool) -> None:
        """The camera stopped delivering frames, or delivers again: what the companion says about it goes out in
        order with the events (the processing loop calls this, as it hands over events)."""
        if self.companion is not None:
            self._enqueue([Message(*publication) for publication in self.companion.on_source(delivering)])

    def _enqueue(self, messages: list[Message]) -> None:
        """Queue ``messages`` for the sender, in order after what is queued already."""
        if messages:
            with self._lock:
                self.delivery.add(messages, connected=self._connected, closing=self._closing)
                self._lock.notify_all()

    def _send_loop(self) -> None:
        delivery = self.delivery
        while True:
            with self._lock:
                while not self._closing and (not self._connected or not delivery.has_work()):
                    if self.spool is not None:
                        self.spool.sync()  # idle: make what was appended durable
                    if self._connected:
                        self._recovered()  # caught up since a crash: nothing left to prove
                    self._lock.wait(0.5)
                if self._closing and (not self._connected or not delivery.queue):
                    return
                message = delivery.next_message()
                if message is None:
                    continue
            info = self.client.publish(message.topic, message.payload, qos=self.qos, retain=message.retain)
            with self._lock:
                if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
                    delivery.sent(info.mid if self.qos > 0 else None)
                    self._recovered()
                else:  # the connection dropped between the check and the publish: keep it, retry after reconnect
                    self._connected = False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is published and acknowledged, or ``timeout`` passes.

        With a spool, that includes what the spool still holds while the broker is there to take it.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.delivery.outstanding(self._connected):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("MQTT flush timed out: %d queued, %d unacknowledged", len(self.delivery.queue),
                                len(self.delivery.pending))
                    return False
                self._lock.wait(min(remaining, 0.2))
        return True

    def close(self) -> None:
        """Stop sending (call :meth:`flush` first to wait for delivery). What is still queued goes to the spool, or
        is reported, not waited for.

        A network thread still trying to reach an absent broker is not joined
        (it is a daemon thread): a stop must not wait out its connect timeout.
        """
        self._closing = True
        with self._lock:
            self._lock.notify_all()
            unsent = len(self.delivery.queue) + len(self.delivery.pending)
            connected = self._connected
            if self.spool is not None:
                spooled = self.delivery.close()
        if self.spool is not None:
            if spooled:
                log.warning("MQTT: %d events not delivered by the stop timeout are in the spool %s; they go first at "
                            "the next start", spooled, self.spool.path)
        elif unsent:
            state = "connected" if connected else "refused the login" if self.refused_login else "unreachable"
            log.error("MQTT: %d events not delivered at stop (broker %s)", unsent, state)
        if connected and self.companion is not None:  # a clean stop: say so (the last will is for crashes)
            for publication in self.companion.on_clean_stop():
                self.client.publish(publication.topic, publication.payload, qos=1,
                                    retain=publication.retain).wait_for_publish(1.0)
        self.client.disconnect()
        if connected:
            self.client.loop_stop()
