"""SIGTERM ends the service with exit 0 within service.stop_timeout_s, whatever it is doing.

Each test starts the real CLI in a subprocess, waits until it is in the state under test (read from its log), sends
SIGTERM and measures how long it takes to exit. The bounds are generous: they catch a hang (a 30 s backoff, a
blocked read, a second flush), not a speed.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, free_port, require

pytestmark = pytest.mark.slow  # each test runs the service in a subprocess and waits for a state (seconds each)

STOP_TIMEOUT_S = 2.0
EXIT_BOUND_S = STOP_TIMEOUT_S + 3.0  # the stop budget plus process teardown


def start(tmp_path, *arguments):
    model = require(SHIPPED_INT8, "shipped int8 model")
    config = tmp_path / "config.toml"
    config.write_text(f"[service]\nstop_timeout_s = {STOP_TIMEOUT_S}\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--config", str(config), "--model",
                             str(model), "--no-stdout", *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def wait_for_log(process, needle: str, timeout: float = 30.0) -> list[str]:
    """Read the service's stderr until a line contains ``needle``; the lines read so far."""
    lines: list[str] = []
    found = threading.Event()

    def reader():
        for line in process.stderr:
            lines.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), f"never logged {needle!r}: {''.join(lines)[-2000:]}"
    return lines


def stop_and_time(process) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return time.monotonic() - started


def test_stops_while_the_camera_is_missing_and_retried(tmp_path):
    # A camera device that does not exist: the source retries with a backoff (0.5 s doubling up to 30 s).
    process = start(tmp_path, "--source", "/dev/video97")
    wait_for_log(process, "retrying in 4.0 s")  # three attempts in: the process now waits 4 s before the next
    seconds = stop_and_time(process)
    # Nothing to flush: the stop must cut the backoff short rather than wait it out.
    assert process.returncode == 0 and seconds < 2.0, (process.returncode, seconds)


@pytest.fixture
def silent_stream_server():
    """A TCP server that accepts connections and never sends a byte: a network camera that stalls."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    clients = []

    def accept():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            clients.append(client)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    server.close()
    for client in clients:
        client.close()


def test_stops_while_a_network_stream_stalls_before_the_first_frame(tmp_path, silent_stream_server):
    process = start(tmp_path, "--source", silent_stream_server)
    wait_for_log(process, "unavailable, retrying")  # the open timed out; no frame has ever arrived
    seconds = stop_and_time(process)
    assert process.returncode == 0 and seconds < EXIT_BOUND_S, (process.returncode, seconds)


def test_stops_during_start_up(tmp_path):
    process = start(tmp_path, "--source", str(require(MEDIA / "test.mp4", "test.mp4")), "--loop")
    wait_for_log(process, "loaded fer_cnn_lstm_int8.tflite")  # the model is loading or loaded, the loop not running
    seconds = stop_and_time(process)
    assert process.returncode == 0 and seconds < EXIT_BOUND_S, (process.returncode, seconds)


def test_stops_while_the_broker_is_unreachable_with_events_queued(tmp_path):
    import json
    import urllib.request

    broker_port, http_port = free_port(), free_port()
    video = require(MEDIA / "test.mp4", "test.mp4")
    process = start(tmp_path, "--source", str(video), "--loop", "--mqtt-host", "127.0.0.1", "--mqtt-port",
                    str(broker_port), "--http", f"127.0.0.1:{http_port}")
    lines = wait_for_log(process, "ready: model loaded, first frame read")
    time.sleep(3.0)  # several reconnect attempts; events pile up in the MQTT buffer for the stop to give up on
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5).read())
    assert health["sinks"]["mqtt"]["connected"] is False
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    assert 'fer_edge_sink_connected{sink="mqtt"} 0.0' in metrics
    seconds = stop_and_time(process)
    assert process.returncode == 0 and seconds < EXIT_BOUND_S, (process.returncode, seconds)
    log = "".join(lines) + process.stderr.read()
    # The failure is logged once for the streak, with where and why; the stop says what it could not deliver.
    failures = [line for line in log.splitlines() if "MQTT broker" in line and "unreachable:" in line]
    assert len(failures) == 1, failures
    assert f"MQTT broker 127.0.0.1:{broker_port} unreachable: ConnectionRefusedError" in failures[0]
    assert "MQTT flush timed out" in log and "events not delivered at stop" in log
