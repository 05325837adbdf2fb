"""The HTTP endpoint under hostile clients: a half-sent request is cut off, connections are capped, and a client
that goes away leaves one debug line, not a traceback."""

import logging
import socket
import time
import urllib.request

import pytest

from edge_runtime.health import HealthServer, Metrics


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server(**limits) -> HealthServer:
    pytest.importorskip("prometheus_client")
    server = HealthServer(f"127.0.0.1:{_free_port()}", Metrics(), lambda: (True, {"status": "ok"}), **limits)
    server.start()
    return server


def _closed_by_server(connection: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``connection`` (reads end) within ``within_s``."""
    connection.settimeout(within_s)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_half_sent_request_is_cut_off_after_the_read_timeout():
    server = _server(read_timeout_s=0.5)
    try:
        host, port = server.address.split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            started = time.monotonic()
            assert _closed_by_server(slow, 5.0)
            assert time.monotonic() - started < 3.0
    finally:
        server.close()


def test_connections_beyond_the_cap_are_closed_at_once_and_service_resumes():
    server = _server(read_timeout_s=5.0, max_connections=2)
    host, port = server.address.split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(2)]
    try:
        time.sleep(0.2)  # both are accepted and hold a slot
        with socket.create_connection((host, int(port))) as third:
            assert _closed_by_server(third, 2.0)
        for connection in idle:
            connection.close()
        time.sleep(0.2)
        with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        for connection in idle:
            connection.close()
        server.close()


def test_a_client_that_goes_away_is_one_debug_line(caplog, capsys):
    server = _server()
    try:
        with caplog.at_level(logging.DEBUG, logger="edge_runtime.health"):
            try:
                raise BrokenPipeError(32, "Broken pipe")
            except BrokenPipeError:
                server.server.handle_error(None, ("192.0.2.1", 5555))
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("http: ")]
        assert lines == ["http: 192.0.2.1 went away (BrokenPipeError)"]
        # The stdlib's default prints this header and a traceback to stderr.
        assert "Exception occurred during processing of request" not in capsys.readouterr().err
    finally:
        server.close()


def _get(address: str, host_header: str) -> int:
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := connection.recv(4096):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_a_foreign_host_name_is_refused_so_dns_rebinding_cannot_reach_the_camera(caplog):
    server = _server(allowed_hosts="fer-pi.lan")
    try:
        port = server.address.split(":")[1]
        assert _get(server.address, "attacker.example") == 421
        assert _get(server.address, f"attacker.example:{port}") == 421
        for good in (f"127.0.0.1:{port}", f"localhost:{port}", "192.168.1.20", f"FER-PI.LAN:{port}"):
            assert _get(server.address, good) == 200, good
        assert sum("refused a request for Host" in r.getMessage() for r in caplog.records) == 2
    finally:
        server.close()
