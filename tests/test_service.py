"""The runtime as a service: config validation, systemd notify, SIGTERM, HTTP health/metrics, sinks, MQTT, unit file."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request

import pytest

from edge_runtime.config import Config, config_from_dict, describe_schema, load_config
from edge_runtime.core.contract import budget_state, load_contract
from edge_runtime.core.errors import ConfigError
from edge_runtime.core.faces import FaceEvent
from edge_runtime.sinks import RotatingFileSink
from edge_runtime.sinks.mqtt import MqttSink
from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, face_event, free_port, require, run_cli, subscriber, wait_for
from tests.test_runtime_parts import FakeCapture


@pytest.mark.parametrize("raw, message", [
    ({"modle": {}}, "unknown key(s) modle; allowed in the top level: model, source"),
    ({"model": {"thread": 2}}, "unknown key(s) model.thread; allowed in model: path, backend"),
    ({"model": {"threads": "two"}}, "model.threads: expected int, got str 'two'"),
    ({"model": {"threads": 0}}, "model.threads: 0 is below the minimum 1"),
    ({"smoothing": {"margin": 1.5}}, "smoothing.margin: 1.5 is above the maximum 1.0"),
    ({"detector": {"name": "dlib"}}, "detector.name: 'dlib' is not allowed; choose one of blazeface, haar, yunet"),
    ({"mqtt": {"qos": 3}}, "mqtt.qos: 3 is not allowed; choose one of 0, 1, 2"),
    ({"sinks": {"stdout": "yes"}}, "sinks.stdout: expected bool, got str 'yes'"),
    ({"http": "127.0.0.1:80"}, "http: expected a table, got str"),
])
def test_config_errors_name_key_value_and_allowed(raw, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(raw)
    assert message in str(error.value)


def test_config_file_errors_and_defaults(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\npath = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(broken)
    # The documented defaults are a valid config file that loads to exactly the defaults.
    documented = tmp_path / "defaults.toml"
    documented.write_text("\n".join(describe_schema()))
    assert load_config(documented) == Config()
    assert load_config(ROOT / "deploy" / "config.toml").model.threads == 2


def test_the_smoothing_table_in_the_docs_is_the_schema():
    """docs/deploy.md's table of the [smoothing] settings lists exactly the section's keys, with their defaults."""
    from edge_runtime.config import schema_field
    from edge_runtime.smoothing import SmoothingOptions

    text = (ROOT / "docs" / "deploy.md").read_text()
    table = text[text.index("| setting | default | what it does | larger means |"):].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M))
    assert set(rows) == {item for item in SmoothingOptions.__dataclass_fields__}
    for key, default in rows.items():
        assert float(default) == schema_field(f"smoothing.{key}").default, key


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[source]\nspec = "0"\n')
    assert run_cli("-m", "edge_runtime.cli", "check-config", str(good)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nmin_face = 2\n")
    result = run_cli("-m", "edge_runtime.cli", "check-config", str(bad))
    assert result.returncode == 2 and "detector.min_face: 2 is below the minimum 8" in result.stderr
    assert "Traceback" not in result.stderr
    shown = run_cli("-m", "edge_runtime.cli", "show-config")
    assert tomllib.loads(shown.stdout)["mqtt"]["qos"] == 1


def test_rotating_file_sink(tmp_path):
    sink = RotatingFileSink(tmp_path / "events.jsonl", max_bytes=1024, backups=2)
    for index in range(100):
        sink(face_event(index))
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    newest = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert FaceEvent.from_json(newest[-1]) == face_event(99)  # what is written reads back as the same record
    assert all(p.stat().st_size <= 1024 + 300 for p in tmp_path.iterdir())


def _start_service(model, extra_env=None, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--model", str(model),
                             "--source", str(require(MEDIA / "test.mp4", "test.mp4")), "--loop", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_notify_watchdog_sigterm_flush_and_http(tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    require(MEDIA / "test.mp4", "test.mp4")
    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(30)
    port = free_port()
    jsonl = tmp_path / "events.jsonl"
    process = _start_service(model, {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"},
                             "--http", f"127.0.0.1:{port}", "--jsonl", str(jsonl))
    # Read the events as journald would: an unread pipe would fill and stall the service mid-write.
    collected: list[str] = []
    drain = threading.Thread(target=lambda: collected.extend(process.stdout), daemon=True)
    drain.start()
    try:
        messages = [receiver.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        while sum(m == "WATCHDOG=1" for m in messages) < 2:
            messages.append(receiver.recv(4096).decode())
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
        assert health["status"] == "ok" and health["frames"] > 0
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        frames = next(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("fer_edge_frames_total"))
        assert frames > 0
        assert "fer_edge_events_total{label=" in metrics and "fer_edge_inference_seconds_bucket" in metrics
        assert "fer_edge_source_reconnects_total" in metrics and "fer_edge_frames_dropped_total" in metrics
        contract = load_contract(model)
        info = next(line for line in metrics.splitlines() if line.startswith("fer_edge_model_info{"))
        assert f'file="{model.name}"' in info and f'budget="{budget_state(contract)}"' in info and info.endswith(" 1.0")
        accuracy = next(line for line in metrics.splitlines()
                        if line.startswith("fer_edge_model_verified_accuracy_ratio{"))
        assert abs(float(accuracy.split()[-1]) - contract.verified.accuracy) < 1e-9
        # Prometheus conventions: every counter ends in _total, no *_created series, units in the names.
        names = {line.split("{")[0].split()[0] for line in metrics.splitlines() if line and not line.startswith("#")}
        counters = {line.split()[2] for line in metrics.splitlines()
                    if line.startswith("# TYPE") and line.endswith(" counter")}
        assert counters and all(name.endswith("_total") for name in counters)
        assert not any(name.endswith("_created") for name in names)
        assert "fer_edge_frames_per_second" in names and "fer_edge_sink_dropped_events_total" in names
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert not_found.value.code == 404
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        drain.join(10)
        stdout, stderr = "".join(collected), process.stderr.read()
        assert process.returncode == 0, stderr[-2000:]
        assert time.monotonic() - started < 10
        while "STOPPING=1" not in messages:
            messages.append(receiver.recv(4096).decode())
    finally:
        if process.poll() is None:
            process.kill()
        receiver.close()
    lines = stdout.strip().splitlines()
    assert lines and all(json.loads(line)["source"].endswith("test.mp4") for line in lines)  # every line complete
    assert len(jsonl.read_text().splitlines()) == len(lines)  # the file sink was flushed too


class _StallingCapture(FakeCapture):
    """A camera at the hardware boundary: ``frames`` frames, then reads that block ``stall_s`` each (a wedged
    device that stays open)."""

    def __init__(self, frames: int, stall_s: float):
        super().__init__(frames)
        self.stall_s = stall_s

    def read(self):
        if self.left <= 0:
            time.sleep(self.stall_s)
        return super().read()


def _notify_messages_of_a_run(tmp_path, monkeypatch, capture, hang_listener_s: float = 0.0) -> list[str]:
    """Run a Service in-process for 0.7 s on a camera (``capture``; None: it never opens) with systemd's notify
    socket, a 0.2 s watchdog and idle ticks every 0.1 s; the datagrams it sent."""
    from edge_runtime import sources
    from edge_runtime.service import Service, build_runtime
    from edge_runtime.sources import CameraSource
    from edge_runtime.systemd import Notifier

    monkeypatch.setattr(sources, "IDLE_TICK_S", 0.1)

    model = require(SHIPPED_INT8, "shipped int8 model")
    config = config_from_dict({"model": {"path": str(model)}, "sinks": {"stdout": False}})
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "notify.sock"))
    receiver.settimeout(0.3)
    messages: list[str] = []

    def read_as_systemd_does():  # at once: a unix datagram socket queues only a few
        while True:
            try:
                messages.append(receiver.recv(4096).decode())
            except TimeoutError:
                return

    reader = threading.Thread(target=read_as_systemd_does, daemon=True)
    camera = CameraSource(0, opener=lambda spec: capture, initial_backoff_s=0.05, max_backoff_s=0.1)
    service = Service(config, runtime=build_runtime(config, source=camera),
                      notifier=Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}))
    if hang_listener_s:  # the loop hangs in processing its first frame (as a hung inference would)
        service.runtime.frame_listeners.append(lambda frame, events: time.sleep(hang_listener_s))
    stopper = threading.Timer(0.7, service.runtime.stop)
    reader.start()
    stopper.start()
    try:
        service.run()
    finally:
        stopper.cancel()
        reader.join(5.0)
        receiver.close()
    return messages


def test_a_service_waiting_for_its_camera_keeps_the_watchdog_fed_and_says_why(tmp_path, monkeypatch):
    """While a camera is reopened with backoff the process is doing its job: systemd gets READY=1 (else the start
    times out), WATCHDOG=1 (else the watchdog restarts it every 30 s for as long as the camera is down) and a STATUS
    that says what it waits for."""
    messages = _notify_messages_of_a_run(tmp_path, monkeypatch, capture=None)
    assert messages[0].startswith("READY=1\nSTATUS=waiting for frames from 0: not connected"), messages
    assert messages.count("WATCHDOG=1") >= 3 and messages[-1] == "STOPPING=1", messages


@pytest.mark.parametrize("case", ["a camera that stays open but stalls", "a loop that hangs in processing"])
def test_the_watchdog_is_not_fed_by_a_stalled_camera_or_a_hung_loop(tmp_path, monkeypatch, case):
    stalls = case.startswith("a camera")
    messages = _notify_messages_of_a_run(tmp_path, monkeypatch, _StallingCapture(1 if stalls else 1000, stall_s=0.9),
                                         hang_listener_s=0.0 if stalls else 0.9)
    assert messages[0].startswith("READY=1\nSTATUS=processing 0"), messages  # at the first frame
    # Only the first frame's ping: in 0.7 s at a 0.2 s watchdog, systemd would restart it.
    assert messages.count("WATCHDOG=1") == 1, messages


def test_health_reports_stall():
    from edge_runtime.config import with_overrides
    from edge_runtime.service import Service

    model = require(SHIPPED_INT8, "shipped int8 model")
    photo = require(MEDIA / "justin.jpg", "photo")
    settings = with_overrides(Config(), {"model.path": str(model), "source.spec": str(photo),
                                         "http.stall_seconds": 0.5, "sinks.stdout": False})
    service = Service(settings, sinks=[])
    assert service.health().status == "starting" and not service.health().healthy
    service.runtime.run()
    assert service.health().healthy and service.health().seconds_since_frame is not None
    service.runtime.stats.last_frame_monotonic -= 5
    report = service.health()
    assert not report.healthy and report.status == "stalled" and report.to_json()["status"] == "stalled"


def test_frame_rate_counts_the_last_five_seconds():
    from edge_runtime.health import FrameRate

    rate = FrameRate()
    assert rate.rate(0.0) is None  # no frames yet: unknown, not zero
    for i in range(11):  # 10 frames per second for one second...
        rate.tick(i * 0.1)
    assert rate.rate(1.0) == pytest.approx(10.0)
    for second in range(2, 7):  # ...then one per second
        rate.tick(float(second))
    assert rate.rate(6.0) == pytest.approx(1.0)  # the fast second (older than 5 s) has left the window
    assert rate.rate(7.0) == pytest.approx(4 / 5)  # no frame for a second: it falls (4 intervals in 5 s)
    assert rate.rate(20.0) is None  # a long stall empties it


@pytest.mark.slow  # waits out a broker restart and the sink's reconnection
def test_mqtt_delivery_and_broker_restart(mosquitto):
    import threading

    received: list = []
    subscribed = threading.Event()
    listener = subscriber(mosquitto.port, received, subscribed)
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", qos=1, client_id="fer-edge-test", max_backoff_s=2)
    try:
        assert wait_for(lambda: sink.connected)
        for index in range(50):
            sink(face_event(index))
        assert sink.flush(10)
        # QoS 1 is at-least-once: a redelivered duplicate is allowed, a missing frame is not.
        assert wait_for(lambda: {event["frame"] for event in received} == set(range(50)))
        mosquitto.stop()
        assert wait_for(lambda: not sink.connected)
        # Debian's mosquitto does not restore the subscriber's session after a restart (session_present is False),
        # so the test subscriber must be back before the sink delivers, or the broker has nobody to route to.
        # Pause the sink's network loop until then; its buffering and redelivery are what is under test.
        sink.client.loop_stop()
        for index in range(50, 80):  # produced while the broker is away: buffered, not lost
            sink(face_event(index))
        assert len(sink.queue) == 30 and sink.dropped == 0
        subscribed.clear()
        mosquitto.start()
        assert subscribed.wait(20)
        sink.client.loop_start()
        assert sink.flush(30)
        assert wait_for(lambda: len(received) >= 80, 30)
        assert sorted({event["frame"] for event in received}) == list(range(80))
    finally:
        sink.close()
        listener.loop_stop()
        listener.disconnect()


def test_garbage_in_the_spool_is_set_aside_and_every_good_event_still_arrives(mosquitto, tmp_path):
    from edge_runtime.sinks.spool import Spool, SpooledMessage

    path = tmp_path / "spool.jsonl"
    spool = Spool(path, max_bytes=10_000_000)
    for index in range(1200):  # more than one 500-line read, with the garbage in the first one
        spool.append(SpooledMessage("fer/test", json.dumps(face_event(index).to_json()), False))
    spool.close()
    lines = path.read_bytes().splitlines(keepends=True)
    garbage = [b"not json\n", b'{"payload": "no topic"}\n', b"\x00\xff\n"]
    path.write_bytes(b"".join(lines[:100] + garbage + lines[100:]))
    received: list = []
    subscribed = threading.Event()
    listener = subscriber(mosquitto.port, received, subscribed)
    assert subscribed.wait(10)
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", qos=1, client_id="fer-edge-poisoned", max_backoff_s=1,
                    spool=Spool(path, max_bytes=10_000_000))
    try:
        assert wait_for(lambda: len({event["frame"] for event in received}) == 1200, 60)
        assert sink.spool.quarantined == 3 and sink.spool.quarantine_path.read_bytes() == b"".join(garbage)
        assert sink.flush(10)
    finally:
        sink.close()
        listener.loop_stop()
        listener.disconnect()


def test_events_the_disk_refuses_to_spool_wait_in_memory_and_beyond_it_are_counted_as_dropped(
        mosquitto, tmp_path, monkeypatch, caplog):
    # The disk is the boundary mocked here: every write fails as on a full disk, until the monkeypatch is undone.
    import errno

    import edge_runtime.sinks.spool as spool_module
    from edge_runtime.sinks.spool import Spool

    mosquitto.stop()
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", max_backoff_s=1, buffer_size=3,
                    spool=Spool(tmp_path / "spool.jsonl", max_bytes=1_000_000))

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", disk_full)
    try:
        for index in range(5):
            sink(face_event(index))  # the broker is away: to the spool, which cannot take them
        assert sink.dropped == 2 and sink.spool.size == 0  # 3 wait in memory (buffer_size), 2 are lost and counted
        assert "not writable (No space left on device)" in caplog.text
        monkeypatch.undo()  # the disk has room again: what waited in memory goes to the spool first, in order
        sink(face_event(5))
        assert [json.loads(m.payload)["frame"] for m in sink.spool.read_all()] == [0, 1, 2, 5]
    finally:
        monkeypatch.undo()
        sink.close()


def test_mqtt_bounded_buffer_counts_drops(mosquitto):
    mosquitto.stop()
    sink = MqttSink("127.0.0.1", mosquitto.port, "fer/test", buffer_size=10, max_backoff_s=1)
    try:
        for index in range(25):
            sink(face_event(index))
        assert sink.dropped == 15 and [json.loads(m.payload)["frame"] for m in sink.queue] == list(range(15, 25))
    finally:
        sink.close()


def test_unit_file_verifies(tmp_path):
    analyzer = shutil.which("systemd-analyze")
    if analyzer is None:
        pytest.skip("systemd-analyze is not installed (CI installs systemd)")
    unit = (ROOT / "deploy" / "fer-edge.service").read_text()
    for required in ("Type=notify", "WatchdogSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                     "SupplementaryGroups=video", "Restart=on-failure", "StateDirectory=fer-edge"):
        assert required in unit
    assert "\nPrivateDevices=" not in unit  # the directive would hide the camera
    # verify checks that ExecStart exists: point it at this environment's edge-runtime.
    executable = shutil.which("edge-runtime") or sys.executable
    local = tmp_path / "fer-edge.service"
    local.write_text(unit.replace("/opt/fer-edge/venv/bin/edge-runtime", executable))
    result = subprocess.run([analyzer, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_units_documentation_is_installed_by_the_installer():
    unit, installer = (ROOT / "deploy" / "fer-edge.service").read_text(), (ROOT / "deploy" / "install.sh").read_text()
    pages = re.search(r"^Documentation=(.*)$", unit, re.M).group(1).split()
    copied = re.findall(r'^(?:cp -r|install -m 0644) (.*) "\$PREFIX"/', installer, re.M)
    installed = {name for line in copied for name in line.split()}
    for page in pages:
        relative = page.removeprefix("file:///opt/fer-edge/")
        assert (ROOT / relative).is_file() and relative.split("/")[0] in installed, page


def test_unit_file_is_hardened_with_the_camera_still_reachable():
    analyzer = shutil.which("systemd-analyze")
    if analyzer is None:
        pytest.skip("systemd-analyze is not installed (CI installs systemd)")
    unit = ROOT / "deploy" / "fer-edge.service"
    result = subprocess.run([analyzer, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                            timeout=60)
    exposure = float(re.search(r"Overall exposure level for fer-edge.service: ([0-9.]+)", result.stdout).group(1))
    assert exposure <= 1.5, result.stdout[-3000:]
    text = unit.read_text()
    # The camera stack and the Coral stay reachable through the device ACL; the events file is not world-readable.
    for line in ("DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "DeviceAllow=char-media rw",
                 "DeviceAllow=char-dma_heap rw", "DeviceAllow=char-usb_device rw", "DeviceAllow=char-apex rw",
                 "UMask=0027", "CapabilityBoundingSet=", "SupplementaryGroups=video plugdev"):
        assert f"\n{line}\n" in text, line


@pytest.mark.slow
def test_home_assistant_discovery_state_and_last_will(mosquitto):
    """The runtime announces itself to Home Assistant (retained discovery configs, availability) and the broker
    says `offline` through the last will when the process dies."""
    import threading

    import paho.mqtt.client as mqtt

    from edge_runtime import __version__

    model = require(SHIPPED_INT8, "shipped int8 model")
    messages: dict[str, list] = {}
    lock = threading.Lock()

    def on_message(client, userdata, message):
        with lock:
            messages.setdefault(message.topic, []).append((message.payload.decode(), message.retain))

    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-watcher")
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/#", 1), ("fer-edge/#", 1)])
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    process = _start_service(model, None, "--output-mode", "changes", "--mqtt-host", "127.0.0.1",
                             "--mqtt-port", str(mosquitto.port), "--no-stdout")
    try:
        configs = lambda: {t: m for t, m in messages.items() if t.startswith("homeassistant/")}  # noqa: E731
        assert wait_for(lambda: len(configs()) == 9 and "fer-edge/fer_edge/state" in messages, 30), list(messages)
        with lock:
            availability = [payload for payload, _ in messages["fer-edge/fer_edge/availability"]]
            discovered = {topic: json.loads(payloads[-1][0]) for topic, payloads in configs().items()}
            state = json.loads(messages["fer-edge/fer_edge/state"][-1][0])
        assert availability[-1] == "online"
        expected_objects = {"emotion", "faces", *(f"share_{label}" for label in
                                                  ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))}
        assert {topic.split("/")[3] for topic in discovered} == expected_objects
        for topic, config in discovered.items():
            # Home Assistant's MQTT sensor keys (home-assistant.io/integrations/sensor.mqtt): a state topic, a unique
            # id (needed for a device), availability by topic (not together with an availability list), a device.
            assert topic.startswith("homeassistant/sensor/fer_edge/") and topic.endswith("/config")
            assert config["state_topic"] == "fer-edge/fer_edge/state" and "value_json." in config["value_template"]
            assert config["unique_id"].startswith("fer_edge_fer_edge_") and config["name"]
            assert config["availability_topic"] == "fer-edge/fer_edge/availability" and "availability" not in config
            assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
            device = config["device"]
            assert isinstance(device["identifiers"], list) and device["sw_version"] == __version__
            assert device["manufacturer"] == "fer-edge" and device["name"]
        assert len({config["unique_id"] for config in discovered.values()}) == 9
        assert set(state) == {"emotion", "faces", "shares", "ts"} and isinstance(state["faces"], int)
        # A crash (no clean disconnect): the broker publishes the last will.
        process.kill()
        process.wait(10)
        assert wait_for(lambda: messages["fer-edge/fer_edge/availability"][-1][0] == "offline", 30)
    finally:
        if process.poll() is None:
            process.kill()
        watcher.loop_stop()
        watcher.disconnect()
    # Retained: a client that connects now (Home Assistant after a restart) gets the configs and `offline` at once.
    late: dict[str, str] = {}
    reader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-late")
    reader.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/#", 1), ("fer-edge/+/availability", 1)])
    reader.on_message = lambda c, u, message: late.__setitem__(message.topic, message.payload.decode())
    reader.connect("127.0.0.1", mosquitto.port)
    reader.loop_start()
    try:
        assert wait_for(lambda: len(late) == 10, 10) and late["fer-edge/fer_edge/availability"] == "offline"
    finally:
        reader.loop_stop()
        reader.disconnect()


def test_home_assistant_availability_follows_whether_the_camera_delivers():
    from edge_runtime.homeassistant import Discovery, HomeAssistantPublisher

    publisher = HomeAssistantPublisher(Discovery("cam", "homeassistant", "1.0"))
    availability = "fer-edge/cam/availability"
    assert publisher.on_connect()[0] == (availability, "online", True)
    assert publisher.on_source(True) == []  # no change, no message
    assert publisher.on_source(False) == [(availability, "offline", True)]
    assert publisher.on_source(False) == []
    assert publisher.on_connect()[0] == (availability, "offline", True)  # a reconnection says it as it is
    assert publisher.on_source(True) == [(availability, "online", True)]
    assert publisher.last_will() == (availability, "offline", True)


class _CameraAwhileGone(FakeCapture):
    """A camera at the hardware boundary: 10 frames of test.mp4, then gone for ``gone_opens`` reopenings, then 10
    frames again, then gone for good."""

    def __init__(self, images, gone_opens: int):
        super().__init__(0, list(images))
        self.opens = [10, *[None] * gone_opens, 10]

    def open(self, spec):
        frames = self.opens.pop(0) if self.opens else None
        if frames is None:
            return None
        self.left = frames
        return self


def test_while_the_camera_is_gone_the_metrics_say_so(monkeypatch):
    """The source's gauges are brought up to date at the idle ticks too, not only at frames (which stop coming)."""
    from edge_runtime import sources
    from edge_runtime.service import Service, build_runtime
    from edge_runtime.sources import CameraSource
    from tests.test_output_modes import first_frames_of_test_video

    monkeypatch.setattr(sources, "IDLE_TICK_S", 0.1)
    model = require(SHIPPED_INT8, "shipped int8 model")
    config = config_from_dict({"model": {"path": str(model)}, "sinks": {"stdout": False},
                               "http": {"listen": f"127.0.0.1:{free_port()}"}})
    camera = _CameraAwhileGone(first_frames_of_test_video()[:10], gone_opens=1000)
    source = CameraSource(0, opener=camera.open, newest_only=False, initial_backoff_s=0.1, max_backoff_s=0.1)
    service = Service(config, runtime=build_runtime(config, [], source=source), sinks=[])
    connected_at_frames = []
    service.runtime.frame_listeners.append(lambda frame, events: connected_at_frames.append(
        re.search(r"^fer_edge_source_connected (\S+)$", service.metrics.render().decode(), re.M).group(1)))
    threading.Timer(1.0, service.runtime.stop).start()
    service.run()
    metrics = service.metrics.render().decode()
    assert "fer_edge_frames_total 10.0" in metrics and connected_at_frames[1:] == ["1.0"] * 9
    assert re.search(r"^fer_edge_source_connected 0.0$", metrics, re.M)  # gone: not the last frame's 1


@pytest.mark.slow
def test_while_the_camera_is_gone_home_assistant_shows_its_sensors_unavailable(mosquitto, monkeypatch):
    """Through a real broker: online, offline once the camera has been gone for max_missed_s (its face has left:
    no faces), online again with its next frame."""
    import paho.mqtt.client as mqtt

    from edge_runtime import sources
    from edge_runtime.service import Service, build_runtime, build_sinks
    from edge_runtime.sources import CameraSource
    from tests.test_output_modes import first_frames_of_test_video

    monkeypatch.setattr(sources, "IDLE_TICK_S", 0.1)
    model = require(SHIPPED_INT8, "shipped int8 model")
    config = config_from_dict({"model": {"path": str(model)}, "sinks": {"stdout": False},
                               "output": {"mode": "changes"}, "smoothing": {"max_missed_s": 0.5},
                               "mqtt": {"host": "127.0.0.1", "port": mosquitto.port}})
    seen: list[tuple[str, str]] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-watcher")
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe("fer-edge/#", 1)
    watcher.on_message = lambda c, u, message: seen.append((message.topic.rsplit("/", 1)[-1], message.payload.decode()))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.loop_start()
    try:
        camera = _CameraAwhileGone(first_frames_of_test_video()[:10], gone_opens=12)  # about 1.2 s without frames
        source = CameraSource(0, opener=camera.open, newest_only=False, initial_backoff_s=0.1, max_backoff_s=0.1)
        sinks = build_sinks(config)
        service = Service(config, runtime=build_runtime(config, sinks, source=source), sinks=sinks)
        threading.Timer(3.0, service.runtime.stop).start()
        service.run()
        assert wait_for(lambda: ("availability", "offline") in seen[-1:], 10)  # the clean stop
        availability = [payload for topic, payload in seen if topic == "availability"]
        # Gone, back, gone for good, and the clean stop.
        assert availability == ["online", "offline", "online", "offline", "offline"], seen
        states = [json.loads(payload)["faces"] for topic, payload in seen if topic == "state"]
        assert 1 in states and 0 in states  # the face came, left while the camera was gone, and came back
    finally:
        watcher.loop_stop()
        watcher.disconnect()


def _collect(port, received, topic="fer/events"):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}")
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    client.on_message = lambda c, u, message: received.append(json.loads(message.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


_SERVICE_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _service_command(model, source, port, spool, *extra):
    """`fer-edge run` publishing to the test broker, spooling to ``spool``, with no stdout sink."""
    return [sys.executable, "-m", "edge_runtime.cli", "run", "--model", str(model), "--source", source,
            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-spool", str(spool), "--no-stdout", *extra]


def _run_service(model, source, port, spool, *extra, timeout=120):
    return subprocess.run(_service_command(model, source, port, spool, *extra), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=_SERVICE_ENV)


@pytest.mark.slow
def test_events_produced_while_the_broker_is_down_arrive_after_a_restart(mosquitto, tmp_path):
    """Broker down -> events -> service stops -> broker up -> service starts -> every event arrives, by id."""
    model = require(SHIPPED_INT8, "shipped int8 model")
    spool, produced = tmp_path / "spool.jsonl", tmp_path / "produced.jsonl"
    mosquitto.stop()
    video = require(MEDIA / "test.mp4", "test.mp4")
    first = _run_service(model, str(video), mosquitto.port, spool, "--jsonl", str(produced))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "are in the spool" in first.stderr
    sent = [json.loads(line) for line in produced.read_text().splitlines()]
    assert len(sent) > 100
    mosquitto.start()
    received: list = []
    collector = _collect(mosquitto.port, received)
    try:
        second = _run_service(model, str(require(MEDIA / "justin.jpg", "justin.jpg")), mosquitto.port, spool)
        assert second.returncode == 0, second.stderr[-2000:]
        assert "spooled by an earlier run will be sent first" in second.stderr
        assert wait_for(lambda: len(received) >= len(sent) + 1, 30)
    finally:
        collector.loop_stop()
        collector.disconnect()
    ids = lambda events: [(e["source"], e["frame"], e["face"]) for e in events]  # noqa: E731
    # Every event of the first run, in order, then the second run's: at-least-once, so duplicates are allowed.
    first_seen = list(dict.fromkeys(ids(received)))
    assert first_seen[:len(sent)] == ids(sent) and first_seen[len(sent)][0].endswith("justin.jpg")
    assert spool.read_text() == ""  # delivered: the spool is empty again


@pytest.mark.slow
def test_a_kill_while_spooling_loses_at_most_the_torn_record(mosquitto, tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    spool = tmp_path / "spool.jsonl"
    mosquitto.stop()
    video = require(MEDIA / "test.mp4", "test.mp4")
    service = subprocess.Popen(_service_command(model, str(video), mosquitto.port, spool, "--loop"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=_SERVICE_ENV)
    assert wait_for(lambda: spool.exists() and spool.stat().st_size > 50_000, 60)
    service.kill()  # SIGKILL while events stream into the spool
    service.wait(10)
    lines = spool.read_bytes().split(b"\n")
    complete = [line for line in lines[:-1] if line]
    assert all(json.loads(line) for line in complete)  # no corruption before the last record
    # Where the kill landed is up to the scheduler; make the worst case happen for certain: a record cut mid-write.
    spool.write_bytes(b"\n".join(complete) + b"\n" + complete[-1][:25])
    mosquitto.start()
    received: list = []
    collector = _collect(mosquitto.port, received)
    try:
        restarted = _run_service(model, str(require(MEDIA / "justin.jpg", "justin.jpg")), mosquitto.port, spool)
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        assert "1 torn message(s) at the end" in restarted.stderr  # the loss is reported
        assert wait_for(lambda: len(received) >= len(complete) + 1, 30)
    finally:
        collector.loop_stop()
        collector.disconnect()
    expected = [json.loads(json.loads(line)["payload"]) for line in complete]
    assert received[:len(complete)] == expected  # every complete record, in order
