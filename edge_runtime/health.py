"""Health and metrics over HTTP: ``/healthz`` (200 while frames flow, 503 when stalled) and ``/metrics`` (Prometheus).

Bound to 127.0.0.1 by default: the endpoint says what the camera sees
(event counts per label), which is nobody else's business unless configured.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from edge_runtime.core.contract import ModelContract, budget_state
from edge_runtime.core.errors import ConfigError
from edge_runtime.core.records import JsonRecord, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkHealth(JsonRecord):
    """One sink's part of ``/healthz``."""

    connected: bool
    dropped: int
    fault: str  # empty while it works


@dataclass(frozen=True)
class HealthReport(JsonRecord):
    """What ``/healthz`` answers (its JSON body), and whether that is healthy (200) or not (503)."""

    status: str  # ok, starting (no frame yet), stalled (no frame for http.stall_seconds) or sink_failed
    frames: int
    events: int
    source_connected: bool
    source_reconnects: int
    source_skipped: int
    sinks: dict[str, SinkHealth]
    fps: float
    faces_in_view: int
    seconds_since_frame: float | None = None  # None before the first frame

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


def parse_listen(value: str, path: str = "http.listen") -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; a :class:`ConfigError` naming ``path`` for anything else."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{path}: {value!r} is not HOST:PORT (for example 127.0.0.1:9108)")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{path}: port {port} in {value!r} is outside 1..65535")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FrameRate:
    """Frames processed per second over a sliding window; one count serves ``/healthz`` and the Prometheus gauge."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: deque[float] = deque()  # monotonic times of the frames inside the window, oldest first

    def tick(self, now: float) -> None:
        """Count one frame processed at ``now`` (monotonic seconds)."""
        self._times.append(now)
        self._drop_before(now)

    def rate(self, now: float) -> float | None:
        """Frames per second over the window ending at ``now`` (measured to ``now``, so it falls while no frame
        comes); ``None`` while fewer than two frames are in it."""
        self._drop_before(now)
        if len(self._times) < 2:
            return None
        span = max(now, self._times[-1]) - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _drop_before(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class Metrics:
    """The runtime's Prometheus metrics, in a registry of their own."""

    def __init__(self, prefix: str = "fer_edge"):
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
        except ImportError as error:
            raise ConfigError("the metrics endpoint needs prometheus-client: "
                              "pip install 'fer-edge[service]'") from error
        # Prometheus naming: counters end in _total (prometheus_client adds it to a Counter's name), units are spelled
        # out, and no *_created series (a start timestamp per counter that dashboards never use).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        p = prefix
        self.frames = Counter(f"{p}_frames", "Frames read from the source", registry=self.registry)
        self.frames_dropped = Counter(f"{p}_frames_dropped", "Frames or files that could not be processed",
                                      registry=self.registry)
        self.faces = Counter(f"{p}_faces", "Faces detected", registry=self.registry)
        self.events = Counter(f"{p}_events", "Events produced, by smoothed label", ["label"], registry=self.registry)
        self.inference_seconds = Histogram(f"{p}_inference_seconds", "Model invoke time per face",
                                           buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
                                           registry=self.registry)
        self.fps = Gauge(f"{p}_frames_per_second", "Frames processed per second over the last 5 seconds",
                         registry=self.registry)
        self.reconnects = Counter(f"{p}_source_reconnects", "Times the camera or stream was reopened",
                                  registry=self.registry)
        self.superseded = Counter(f"{p}_source_frames_superseded", "Camera frames replaced by a newer one before "
                                  "the runtime had time for them (it processes the newest)", registry=self.registry)
        self.sink_dropped = Counter(f"{p}_sink_dropped_events", "Events a sink had to drop (buffer full)", ["sink"],
                                    registry=self.registry)
        self.sink_failed = Counter(f"{p}_sink_failed_events", "Events a sink raised on (logged once per streak)",
                                   ["sink"], registry=self.registry)
        self.sink_connected = Gauge(f"{p}_sink_connected", "1 while the sink delivers (MQTT: the broker is connected)",
                                    ["sink"], registry=self.registry)
        self.sink_faulted = Gauge(f"{p}_sink_faulted", "1 while the sink's sender has crashed and not delivered "
                                  "since its restart (/healthz answers 503 meanwhile)", ["sink"],
                                  registry=self.registry)
        self.source_connected = Gauge(f"{p}_source_connected", "1 while the source delivers frames",
                                      registry=self.registry)
        self.model_info = Gauge(f"{p}_model_info", "The loaded model (always 1); its labels say which one and whether "
                                "it passed its conversion budget", ["file", "quantization", "source_sha256", "budget"],
                                registry=self.registry)
        self.model_verified_accuracy = Gauge(f"{p}_model_verified_accuracy_ratio", "Accuracy fer-convert verified "
                                             "for the loaded model on held-out faces (0..1)", ["split"],
                                             registry=self.registry)

    def describe_model(self, file: str, contract: ModelContract) -> None:
        """Publish which model runs and what its conversion verified (a fleet dashboard's first question)."""
        self.model_info.labels(file=file, quantization=contract.quantization,
                               source_sha256=contract.source_sha256[:12], budget=budget_state(contract)).set(1)
        if contract.verified is not None:
            self.model_verified_accuracy.labels(split=contract.verified.split).set(contract.verified.accuracy)

    def frame_done(self, faces: int, labels: list[str], inference_seconds: tuple[float, ...],
                   frames_per_second: float | None) -> None:
        """Record one processed frame; ``frames_per_second`` is :meth:`FrameRate.rate` (``None`` keeps the gauge)."""
        self.frames.inc()
        self.faces.inc(faces)
        for label in labels:
            self.events.labels(label=label).inc()
        for seconds in inference_seconds:
            self.inference_seconds.observe(seconds)
        if frames_per_second is not None:
            self.fps.set(frames_per_second)

    def render(self) -> bytes:
        """The metrics in Prometheus's text exposition format, as ``/metrics`` serves them."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# A client must send its request (and a viewer take each frame) within this many seconds, or its connection closes:
# a half-sent request must not hold a thread for ever.
READ_TIMEOUT_S = 10.0
# Connections served at once; more are closed at once (each holds a thread, and a viewer holds one for as long as
# it watches).
MAX_CONNECTIONS = 32


class _BoundedServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server with a cap on concurrent connections and quiet client disconnects.

    With ``tls``, each accepted connection's handshake runs in its own thread, under the read timeout: a client
    that stalls in the handshake holds one slot, never the accepting loop.
    """

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int, tls: ssl.SSLContext | None = None):
        self.max_connections = max_connections
        self.tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def get_request(self):
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.debug("http: %s refused: %d connections already open", client_address[0], self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            if self.tls is not None:
                try:
                    request.settimeout(self.RequestHandlerClass.timeout)
                    request.do_handshake()
                except (ssl.SSLError, OSError) as error:  # plain HTTP on the TLS port, a scanner, a stall
                    log.debug("http: TLS handshake with %s failed (%s)", client_address[0], error)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        """A client that goes away or stalls is not an error worth a traceback in the journal: one debug line."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("http: %s went away (%s)", client_address[0], error.__class__.__name__)
        else:
            log.warning("http: request from %s failed: %s: %s", client_address[0], error.__class__.__name__, error)


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` may be served: no header, an IP address, or a name in ``allowed``.

    DNS rebinding reaches a LAN device through a name the attacker controls, never through an IP address, so IP
    addresses (whatever the listen address) and the machine's own names are safe; other names must be allowed.
    """
    if not host_header:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host.rstrip(".") in allowed


def authorized(header: str | None, credentials: str) -> bool:
    """Whether an ``Authorization`` header carries ``credentials`` (``USER:PASSWORD``; no ``USER:`` = any user).

    HTTP basic auth with that user and password passes (a browser's login prompt, Prometheus' ``basic_auth``), and
    so does ``Bearer PASSWORD`` (curl, Prometheus' ``authorization``). Compared in constant time.
    """
    if not credentials:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    user, colon, password = credentials.rpartition(":")
    if not colon:
        user, password = "", credentials
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), password.encode())
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    same_user = hmac.compare_digest(given_user.encode(), user.encode()) if user else True
    return hmac.compare_digest(given_password.encode(), password.encode()) and same_user


def _first_time(seen: set[str], key: str, limit: int = 100) -> bool:
    """Whether ``key`` is new to ``seen`` (and remember it): a refusal is logged once per key, and the memory of
    keys stays bounded (past ``limit`` keys, nothing more is logged)."""
    if key in seen or len(seen) >= limit:
        return False
    seen.add(key)
    return True


def allowed_host_names(extra: str = "") -> frozenset[str]:
    """localhost, this machine's name (and ``NAME.local``), and the comma-separated ``extra`` names."""
    name = socket.gethostname().lower()
    names = {"localhost", name, f"{name}.local", *(n.strip().lower() for n in extra.split(",") if n.strip())}
    return frozenset(names)


@dataclass
class _Routes:
    """What the listener serves, and whom it refuses (each refused name or address is logged once)."""

    metrics: Metrics
    health: Callable[[], HealthReport]
    preview: Any
    host_names: frozenset[str]
    credentials: str
    refused_hosts: set[str] = field(default_factory=set)
    refused_clients: set[str] = field(default_factory=set)


class _Handler(BaseHTTPRequestHandler):
    """One request: the Host and the credentials checked, then /healthz, /metrics and the live view."""

    routes: _Routes  # set on the subclass each HealthServer makes, with the socket's read ``timeout``

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if self._refused():
            return
        path, preview = self.path.split("?")[0], self.routes.preview
        if preview is not None and path == "/stream.mjpg":
            self.send_response(200)
            self.send_header("Content-Type", preview.content_type)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            preview.stream(self.wfile.write)  # until the viewer goes away: handle_error logs that once
            return
        self._reply(*self._answer(path))

    def _refused(self) -> bool:
        """Answer 421 for a host name not served here and 401 without valid credentials; whether it did."""
        routes = self.routes
        if not host_allowed(self.headers.get("Host"), routes.host_names):
            refused = self.headers.get("Host", "")[:100]
            if _first_time(routes.refused_hosts, refused):  # once per name, not per request
                log.warning("http: refused a request for Host %r (add it to http.allowed_hosts if it is yours)",
                            refused)
            self._reply(421, b"this host name is not served here: add it to http.allowed_hosts\n", "text/plain")
            return True
        if not authorized(self.headers.get("Authorization"), routes.credentials):
            client = self.client_address[0]
            if _first_time(routes.refused_clients, client):  # once per address
                log.warning("http: refused a request from %s without valid credentials (http.auth_file)", client)
            self._reply(401, b"log in: the credentials are in http.auth_file\n", "text/plain",
                        {"WWW-Authenticate": 'Basic realm="fer-edge", charset="UTF-8"'})
            return True
        return False

    def _answer(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type of a plain GET."""
        routes, preview = self.routes, self.routes.preview
        if preview is not None and path == "/":
            return 200, preview.page(), "text/html; charset=utf-8"
        if preview is not None and path == "/faces.json":
            return 200, preview.readings.as_json(), "application/json"
        if path == "/metrics":
            return 200, routes.metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
        if path == "/healthz":
            report = routes.health()
            return 200 if report.healthy else 503, json.dumps(report.to_json()).encode(), "application/json"
        return 404, b"not found: try /healthz or /metrics (or / with http.preview)\n", "text/plain"

    def _reply(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # requests are not worth a journal line each
        log.debug("http: " + format, *args)


class HealthServer:
    """A small threaded HTTP server for ``/healthz`` and ``/metrics``."""

    def __init__(self, listen: str, metrics: Metrics, health: Callable[[], HealthReport], preview=None, *,
                 read_timeout_s: float = READ_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 allowed_hosts: str = "", credentials: str = "", tls: ssl.SSLContext | None = None):
        host, port = parse_listen(listen)
        routes = _Routes(metrics, health, preview, allowed_host_names(allowed_hosts), credentials)
        handler = type("Handler", (_Handler,), {"timeout": read_timeout_s, "routes": routes})
        try:
            self.server = _BoundedServer((host, port), handler, max_connections, tls)
        except OSError as error:
            raise ConfigError(f"http.listen: cannot bind {listen}: {error.strerror}") from error
        self.address = f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        """Serve ``/healthz``, ``/metrics`` (and the live view, if on) from a daemon thread."""
        self.thread.start()
        log.info("health and metrics on %s://%s/healthz and /metrics", self.scheme, self.address)

    def close(self) -> None:
        """Stop serving and release the listening socket."""
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class HttpConfig:
    """The ``[http]`` section: the health, metrics and live-view listener."""

    listen: str = setting("", "serve /healthz and /metrics on HOST:PORT, e.g. 127.0.0.1:9108 (empty = off)")
    stall_seconds: float = setting(10.0, "/healthz answers 503 when no frame arrived for this long", minimum=0.5)
    metrics_prefix: str = setting("fer_edge", "prefix of every Prometheus metric name")
    preview: bool = setting(False, "serve a live view at / (MJPEG at /stream.mjpg, with boxes and labels) on this "
                            "listener; nothing is written to disk, and it costs nothing while nobody watches")
    allowed_hosts: str = setting("", "host names that requests may be addressed to (the Host header), comma-separated, "
                                 "besides IP addresses, localhost and this machine's own name; any other name is "
                                 "refused (a web page must not reach the camera by DNS rebinding)")
    auth_file: str = setting("", "file holding USER:PASSWORD (mode 0600): every request must then log in with HTTP "
                             "basic auth (what a browser asks for) or send `Authorization: Bearer PASSWORD` "
                             "(empty = no authentication)")
    allow_unauthenticated: bool = setting(False, "serve a non-loopback http.listen without http.auth_file (anyone "
                                          "who reaches the port sees the metrics, and with http.preview the camera)")
    tls_cert_file: str = setting("", "serve HTTPS with this PEM certificate (chain) instead of plain HTTP (empty = "
                                 "plain; needs http.tls_key_file)")
    tls_key_file: str = setting("", "the certificate's PEM private key (mode 0600)")
