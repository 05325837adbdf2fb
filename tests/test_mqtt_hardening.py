"""MQTT against a real mosquitto: TLS with a CA made by the test (openssl), refused logins, password files and
variables, a sender that crashes and comes back, and a backlog that drains from a full spool without losing the
events made meanwhile."""

import json
import os
import shutil
import ssl
import subprocess
import threading

import pytest

from edge_runtime.config import config_from_dict, mqtt_password, preflight
from edge_runtime.core.errors import ConfigError
from edge_runtime.sinks.mqtt import MqttSink, TlsFiles, tls_context
from edge_runtime.sinks.spool import Spool
from tests.conftest import (
    MEDIA,
    SHIPPED_INT8,
    Mosquitto,
    face_event,
    plain_photo,
    require,
    run_main,
    subscriber,
    wait_for,
)


def tls_broker(tmp_path, pki, require_certificate: bool) -> Mosquitto:
    settings = (f"allow_anonymous true\ncafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
                f"keyfile {pki / 'server.key'}\nrequire_certificate {str(require_certificate).lower()}\n")
    return Mosquitto(tmp_path, settings).start()


def test_events_cross_a_tls_connection_checked_against_the_test_ca(tmp_path, pki):
    broker = tls_broker(tmp_path, pki, require_certificate=True)
    client_files = TlsFiles(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"))
    received: list = []
    subscribed = threading.Event()
    listener = subscriber(broker.port, received, subscribed, tls=tls_context(client_files))
    sink = MqttSink("127.0.0.1", broker.port, "fer/test", max_backoff_s=1, tls=tls_context(client_files))
    try:
        assert subscribed.wait(10) and wait_for(lambda: sink.connected, 10)
        for index in range(20):
            sink(face_event(index))
        assert sink.flush(10)
        assert wait_for(lambda: {event["frame"] for event in received} == set(range(20)), 10)
    finally:
        sink.close()
        listener.loop_stop()
        listener.disconnect()
        broker.stop()


@pytest.mark.parametrize("trust", [
    "other.crt",  # a broker certificate from a CA we were not told to trust
    "",  # the system's CAs: they did not sign the test broker
])
def test_a_broker_certificate_that_does_not_verify_is_refused_and_named(tmp_path, pki, caplog, trust):
    broker = tls_broker(tmp_path, pki, require_certificate=False)
    sink = MqttSink("127.0.0.1", broker.port, "fer/test", max_backoff_s=1,
                    tls=tls_context(TlsFiles(str(pki / trust) if trust else "")))
    try:
        assert wait_for(lambda: "MQTT broker" in caplog.text, 10)
        assert not sink.connected
        failures = [r.getMessage() for r in caplog.records if "MQTT broker" in r.getMessage()]
        assert failures and "TLS handshake failed: the broker's certificate did not verify" in failures[0]
        assert "mqtt.tls_ca_file" in failures[0]
    finally:
        sink.close()
        broker.stop()


def test_a_broker_that_requires_a_client_certificate_refuses_a_client_without_one(tmp_path, pki, caplog):
    broker = tls_broker(tmp_path, pki, require_certificate=True)
    ca_only = tls_context(TlsFiles(str(pki / "ca.crt")))
    sink = MqttSink("127.0.0.1", broker.port, "fer/test", max_backoff_s=1, tls=ca_only)
    try:
        sink(face_event(0))
        assert wait_for(lambda: "may require a client certificate: mqtt.tls_cert_file" in caplog.text, 10)
        assert not sink.connected and sink.published == 0
    finally:
        sink.close()
        broker.stop()


def test_tls_settings_are_checked_before_the_first_frame(pki, tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")

    def check(**mqtt):
        preflight(config_from_dict({"model": {"path": str(model)}, "source": {"spec": str(plain_photo())},
                                    "mqtt": {"host": "127.0.0.1", **mqtt}}), load_model=False)

    check(tls=True, tls_ca_file=str(pki / "ca.crt"), tls_cert_file=str(pki / "client.crt"),
          tls_key_file=str(pki / "client.key"))
    with pytest.raises(ConfigError, match="mqtt.tls_ca_file: cannot load CA certificates from"):
        check(tls=True, tls_ca_file=str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match="mqtt.tls_cert_file: cannot load the client certificate"):
        check(tls=True, tls_cert_file=str(pki / "client.crt"), tls_key_file=str(pki / "server.key"))  # wrong key
    with pytest.raises(ConfigError, match="set but mqtt.tls is false"):
        check(tls_ca_file=str(pki / "ca.crt"))
    readable = tmp_path / "client.key"
    shutil.copy(pki / "client.key", readable)
    os.chmod(readable, 0o644)
    with pytest.raises(ConfigError, match=r"mqtt.tls_key_file: .* may be read by group or others \(mode 0644\)"):
        check(tls=True, tls_cert_file=str(pki / "client.crt"), tls_key_file=str(readable))


@pytest.fixture
def password_broker(tmp_path):
    make_password = shutil.which("mosquitto_passwd")
    if make_password is None:
        pytest.skip("mosquitto_passwd is not installed (CI installs it: apt-get install mosquitto)")
    users = tmp_path / "users"
    subprocess.run([make_password, "-b", "-c", str(users), "fer", "right-password"], check=True, capture_output=True)
    broker = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {users}\n").start()
    yield broker
    broker.stop()


def test_a_refused_login_is_named_as_such(password_broker, caplog):
    sink = MqttSink("127.0.0.1", password_broker.port, "fer/test", username="fer", password="wrong-password",
                    max_backoff_s=1)
    try:
        assert wait_for(lambda: sink.refused_login, 10)  # set after the line is logged
        refusals = [r.getMessage() for r in caplog.records if "refused us" in r.getMessage()]
        assert refusals and "the broker refused the login" in refusals[0] and "mqtt.password_file" in refusals[0]
        assert "wrong-password" not in caplog.text  # the password is never logged
        sink(face_event(0))
    finally:
        sink.close()
    assert "1 events not delivered at stop (broker refused the login)" in caplog.text


def test_the_password_comes_from_a_private_file_or_a_variable(password_broker, tmp_path, capsys, monkeypatch):
    secret = tmp_path / "password"
    secret.write_text("right-password\n")
    os.chmod(secret, 0o644)  # world-readable: refused before anything connects, with the fix and not the password
    model = require(SHIPPED_INT8, "shipped int8 model")
    config = tmp_path / "fer-edge.toml"
    config.write_text(f'[mqtt]\nusername = "fer"\npassword_file = "{secret}"\n')
    code, _, error = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(plain_photo()),
                              "--no-stdout", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(password_broker.port),
                              "--config", str(config))
    error = error.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert "mode 0644" in error and f"chmod 600 {secret}" in error and "right-password" not in error
    os.chmod(secret, 0o600)
    settings = config_from_dict({"mqtt": {"host": "127.0.0.1", "password_file": str(secret)}}).mqtt
    assert mqtt_password(settings) == "right-password"
    from_env = config_from_dict({"mqtt": {"host": "127.0.0.1", "password_env": "FER_TEST_PASSWORD"}}).mqtt
    assert mqtt_password(from_env, {"FER_TEST_PASSWORD": "right-password"}) == "right-password"
    with pytest.raises(ConfigError, match="'FER_TEST_PASSWORD' is not set or empty"):
        mqtt_password(from_env, {})
    sink = MqttSink("127.0.0.1", password_broker.port, "fer/test", username="fer",
                    password=mqtt_password(from_env, {"FER_TEST_PASSWORD": "right-password"}), max_backoff_s=1)
    try:
        assert wait_for(lambda: sink.connected, 10) and not sink.refused_login
    finally:
        sink.close()


def test_a_crashed_sender_is_restarted_shown_as_a_fault_and_recovers(mosquitto, tmp_path, caplog):
    # A real fault: the spool file is replaced by a folder, so the sender's read raises IsADirectoryError.
    path = tmp_path / "spool.jsonl"
    aside = tmp_path / "spool.aside"
    mosquitto.stop()
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", max_backoff_s=1, spool=Spool(path, 1_000_000))
    received: list = []
    try:
        for index in range(20):
            sink(face_event(index))  # the broker is away: spooled
        path.rename(aside)
        path.mkdir()
        mosquitto.start()
        assert wait_for(lambda: sink.sender_restarts >= 1, 15)
        assert "IsADirectoryError" in sink.fault and "MQTT sender crashed" in caplog.text
        path.rmdir()
        aside.rename(path)
        listener = subscriber(mosquitto.port, received)
        assert wait_for(lambda: {event["frame"] for event in received} == set(range(20)), 20)
        assert wait_for(lambda: sink.fault == "", 5) and "MQTT sender recovered" in caplog.text
        listener.loop_stop()
        listener.disconnect()
    finally:
        sink.close()


def test_events_made_while_a_full_spool_drains_are_not_lost(mosquitto, tmp_path):
    line = len(json.dumps({"topic": "fer/test", "retain": False, "payload": json.dumps(face_event(0).to_json(),
                                                                                         separators=(",", ":"))},
                          separators=(",", ":"))) + 1
    mosquitto.stop()
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", max_backoff_s=1, buffer_size=100,
                    spool=Spool(tmp_path / "spool.jsonl", max_bytes=30 * line + line // 2))
    received: list = []
    subscribed = threading.Event()
    try:
        for index in range(40):  # 30 fill the spool; 10 wait in memory
            sink(face_event(index))
        assert sink.dropped == 0 and sink.spool.count() == 30
        mosquitto.start()
        listener = subscriber(mosquitto.port, received, subscribed)
        assert subscribed.wait(10)
        for index in range(40, 60):  # made while the full spool drains
            sink(face_event(index))
        assert sink.flush(20)
        assert wait_for(lambda: {event["frame"] for event in received} == set(range(60)), 10)
        assert sink.dropped == 0
        listener.loop_stop()
        listener.disconnect()
    finally:
        sink.close()


def test_a_tls_context_can_skip_verification_only_when_asked(pki):
    assert tls_context(TlsFiles(str(pki / "ca.crt"))).verify_mode == ssl.CERT_REQUIRED
    relaxed = tls_context(TlsFiles(verify=False))
    assert relaxed.verify_mode == ssl.CERT_NONE and not relaxed.check_hostname


def test_a_faulted_sink_turns_healthz_503_and_its_metric_on_until_it_recovers(mosquitto, tmp_path):
    # The service runs here in the main thread (it installs signal handlers); a helper thread plays the fault and
    # reads /healthz and /metrics as a monitor would. The fault is real: the spool file is replaced by a folder.
    import urllib.error
    import urllib.request

    from edge_runtime.service import Service
    from tests.conftest import free_port

    spool = tmp_path / "spool.jsonl"
    aside = tmp_path / "spool.aside"
    port = free_port()
    mosquitto.stop()
    config = config_from_dict({
        "model": {"path": str(require(SHIPPED_INT8, "shipped int8 model"))},
        "source": {"spec": str(require(MEDIA / "test.mp4", "test.mp4")), "loop": True, "realtime": True},
        "http": {"listen": f"127.0.0.1:{port}"}, "sinks": {"stdout": False},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "spool_file": str(spool), "max_backoff_s": 1,
                 "discovery": False}, "service": {"notify": False}})
    service = Service(config)
    sink = service.sinks[0]
    seen: dict = {}

    def read(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def faulted_metric() -> str:
        return next((line for line in read("/metrics")[1].splitlines()
                     if line.startswith('fer_edge_sink_faulted{sink="mqtt"}')), "")

    def play_the_fault():
        try:
            assert wait_for(lambda: spool.exists() and spool.stat().st_size > 0, 20)
            spool.rename(aside)
            spool.mkdir()
            mosquitto.start()
            assert wait_for(lambda: sink.fault != "", 20)
            seen["faulted"] = read("/healthz")
            seen["faulted_metric"] = faulted_metric() if wait_for(lambda: faulted_metric().endswith(" 1.0"), 5) else ""
            spool.rmdir()
            aside.rename(spool)
            assert wait_for(lambda: sink.fault == "", 20)
            assert wait_for(lambda: read("/healthz")[0] == 200, 10)
            seen["recovered"] = read("/healthz")
            cleared = wait_for(lambda: faulted_metric().endswith(" 0.0"), 5)
            seen["recovered_metric"] = faulted_metric() if cleared else ""
        finally:
            service.request_stop()

    monitor = threading.Thread(target=play_the_fault)
    monitor.start()
    assert service.run() == 0
    monitor.join(30)
    status, body = seen["faulted"]
    assert status == 503 and json.loads(body)["status"] == "sink_failed"
    assert "IsADirectoryError" in json.loads(body)["sinks"]["mqtt"]["fault"]
    assert seen["faulted_metric"].endswith(" 1.0") and seen["recovered_metric"].endswith(" 0.0")
    assert seen["recovered"][0] == 200 and json.loads(seen["recovered"][1])["sinks"]["mqtt"]["fault"] == ""
