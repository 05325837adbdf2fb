"""The HTTP endpoint under hostile clients: a half-sent request is cut off, connections are capped, a client that
goes away leaves one debug line, not a traceback, foreign Host names are refused, credentials and TLS guard every
endpoint, and an exposed listener without credentials is refused."""

import logging
import socket
import time
import urllib.error
import urllib.request

import pytest

from edge_runtime.health import HealthReport, HealthServer, Metrics
from tests.conftest import free_port


def _server(**limits) -> HealthServer:
    pytest.importorskip("prometheus_client")
    healthy = HealthReport(status="ok", frames=1, events=0, source_connected=True, source_reconnects=0,
                           source_skipped=0, sinks={}, fps=0.0, faces_in_view=0)
    server = HealthServer(f"127.0.0.1:{free_port()}", Metrics(), lambda: healthy, **limits)
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


def _request(address: str, headers: dict | None = None, scheme: str = "http", context=None) -> int:
    request = urllib.request.Request(f"{scheme}://{address}/healthz", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _basic(user: str, password: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_credentials_every_request_must_log_in(caplog):
    server = _server(credentials="viewer:s3cret-pass")
    try:
        assert _request(server.address) == 401
        assert _request(server.address, _basic("viewer", "s3cret-pass")) == 200  # a browser's login
        assert _request(server.address, {"Authorization": "Bearer s3cret-pass"}) == 200  # curl, Prometheus
        for wrong in (_basic("viewer", "guess"), _basic("admin", "s3cret-pass"), {"Authorization": "Bearer guess"},
                      {"Authorization": "Basic !!not-base64!!"}, {"Authorization": "Digest s3cret-pass"}):
            assert _request(server.address, wrong) == 401, wrong
        assert sum("without valid credentials" in r.getMessage() for r in caplog.records) == 1  # once per address
        assert "s3cret-pass" not in caplog.text and "guess" not in caplog.text
    finally:
        server.close()


def test_a_401_asks_the_browser_for_a_login():
    server = _server(credentials="s3cret-pass")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{server.address}/", timeout=5)
        assert refused.value.headers["WWW-Authenticate"].startswith('Basic realm="fer-edge"')
        assert _request(server.address, _basic("anyone", "s3cret-pass")) == 200  # no USER: any user name
    finally:
        server.close()


def test_https_serves_with_the_configured_certificate_and_plain_http_is_dropped(pki):
    import ssl

    from edge_runtime.config import server_tls_context
    from edge_runtime.health import HttpConfig

    tls = server_tls_context(HttpConfig(tls_cert_file=str(pki / "server.crt"), tls_key_file=str(pki / "server.key")))
    server = _server(tls=tls, credentials="s3cret-pass")
    try:
        trusting = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        assert _request(server.address, {"Authorization": "Bearer s3cret-pass"}, "https", trusting) == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _request(server.address, scheme="https", context=ssl.create_default_context())
        host, port = server.address.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")  # plain HTTP on the TLS port
            assert _closed_by_server(plain, within_s=5)
        assert _request(server.address, {"Authorization": "Bearer s3cret-pass"}, "https", trusting) == 200
    finally:
        server.close()


@pytest.mark.parametrize("http, refusal", [
    ({"listen": "0.0.0.0:9108"}, "reachable from other machines and http.auth_file is not set"),
    ({"listen": "192.168.1.20:9108", "preview": True}, "would see the metrics and the live camera view"),
    ({"listen": "127.0.0.1:9108", "tls_cert_file": "cert.pem"}, "go together"),
    ({"listen": "127.0.0.1:9108", "auth_file": "auth"},
     r"http.auth_file: auth may be read by group or others \(mode 0644\); run `chmod 600 auth`"),
    ({"listen": "127.0.0.1:9108", "auth_file": "empty"}, "must hold USER:PASSWORD on one line"),
    ({"listen": "127.0.0.1:9108", "auth_file": "missing"}, "http.auth_file: no file at the path given"),
    ({"listen": "0.0.0.0:9108", "allow_unauthenticated": True}, None),
    ({"listen": "[::1]:9108"}, None),
    ({"listen": "0.0.0.0:9108", "auth_file": "private"}, None),
])
def test_an_exposed_listener_needs_authentication_or_an_explicit_waiver(tmp_path, monkeypatch, http, refusal):
    import os

    from edge_runtime.config import config_from_dict, preflight
    from edge_runtime.core.errors import ConfigError
    from tests.conftest import SHIPPED_INT8, plain_photo, require

    monkeypatch.chdir(tmp_path)
    for name, mode, text in (("auth", 0o644, "u:p\n"), ("private", 0o600, "u:p\n"), ("empty", 0o600, "\n")):
        (tmp_path / name).write_text(text)
        os.chmod(tmp_path / name, mode)
    config = config_from_dict({"model": {"path": str(require(SHIPPED_INT8, "shipped int8 model"))},
                               "source": {"spec": str(plain_photo())}, "http": http})
    if refusal is None:
        preflight(config, load_model=False)
        return
    with pytest.raises(ConfigError, match=refusal):
        preflight(config, load_model=False)
