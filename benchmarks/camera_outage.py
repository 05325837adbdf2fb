"""A network camera that goes away and comes back, again and again, under the service as systemd runs it.

The service (`edge-runtime run --config ...`, ``output.mode = "changes"``,
MQTT to a real mosquitto with Home Assistant discovery, the metrics
endpoint) reads a stand-in network camera (benchmarks/stream_lag.py's HTTP
MJPEG camera, showing test.mp4's frames in a loop at 25 fps). From 30 s on,
the camera is gone for ``--down-seconds`` every ``--every-seconds``: it drops
its stream and refuses every reopening. The service gets systemd's notify
socket and a 30 s watchdog (``WATCHDOG_USEC``, as ``deploy/fer-edge.service``
sets it), whose datagrams this script reads as systemd would.

Per outage it records when Home Assistant's availability went ``offline``
and the face ``left`` after the camera went, and when the availability came
back ``online`` and the first event arrived after the camera returned (the
camera is reopened with backoff: 0.5 s doubling up to 30 s). Over the run:
the largest gap between two WATCHDOG=1 datagrams (systemd restarts the
service past 30 s), whether the process ever changed (it must not), its
resident memory, and its exit code at the final SIGTERM.

    python benchmarks/camera_outage.py [--minutes 5] [--down-seconds 20] [--every-seconds 60]

Results: ``benchmarks/results/camera_outage.json`` (docs/benchmarks.md, "Soak").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import ROOT, Broker, free_port, rss_mb, start_service, write_config  # noqa: E402
from stream_lag import LiveMjpegCamera  # noqa: E402

sys.path.insert(0, str(ROOT))
from lab.provenance import provenance, write_json  # noqa: E402

WATCHDOG_S = 30.0  # WatchdogSec in deploy/fer-edge.service


class Journal:
    """Everything the run observes, stamped with seconds since the start: camera changes, the service's notify
    datagrams and the MQTT messages Home Assistant would see."""

    def __init__(self):
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.entries: list[tuple[float, str, str]] = []  # (t, kind, what)

    def add(self, kind: str, what: str) -> None:
        with self.lock:
            self.entries.append((round(time.monotonic() - self.started, 3), kind, what))

    def of(self, kind: str) -> list[tuple[float, str]]:
        with self.lock:
            return [(t, what) for t, k, what in self.entries if k == kind]


def read_notify(path: Path, journal: Journal) -> socket.socket:
    """A bound notify socket whose datagrams a thread records, as systemd would read them."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))

    def loop():
        while True:
            try:
                journal.add("notify", receiver.recv(4096).decode())
            except OSError:
                return

    threading.Thread(target=loop, daemon=True).start()
    return receiver


def watch_mqtt(port: int, journal: Journal):
    """A subscriber to the service's Home Assistant topics (availability and state) and its events."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="camera-outage-watcher")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe([("fer-edge/#", 1), ("fer/outage", 1)])
    client.on_message = lambda c, u, message: journal.add(message.topic.rsplit("/", 1)[-1], message.payload.decode())
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def outage_config(work: Path, args, camera: LiveMjpegCamera, broker: Broker, http_port: int) -> Path:
    sections = {
        "model": {"path": str(args.model), "threads": 1},
        "source": {"spec": camera.url},
        "output": {"mode": "changes"},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "sinks": {"stdout": False},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic": "fer/outage", "client_id": "camera-outage"},
    }
    return write_config(work / "config.toml", sections)


def first_after(entries: list[tuple[float, str]], t: float, what=None) -> float | None:
    """Seconds from ``t`` to the first entry after it (whose text is ``what``, if given)."""
    later = [at for at, text in entries if at >= t and (what is None or text == what)]
    return round(later[0] - t, 2) if later else None


def outage_figures(journal: Journal, outages: list[tuple[float, float]]) -> list[dict]:
    """For each outage (camera gone at t0, back at t1): how long until Home Assistant saw it go and come back."""
    availability, states, events = journal.of("availability"), journal.of("state"), journal.of("outage")
    left = [(t, s) for t, s in states if json.loads(s)["faces"] == 0]
    return [{"gone_at_s": t0, "back_at_s": t1,
             "offline_after_s": first_after(availability, t0, "offline"),
             "faces_zero_after_s": first_after(left, t0),
             "online_after_return_s": first_after(availability, t1, "online"),
             "first_event_after_return_s": first_after(events, t1)} for t0, t1 in outages]


def run(args, work: Path) -> dict:
    journal = Journal()
    capture = cv2.VideoCapture(str(args.video))
    images = []
    while len(images) < 250 and (frame := capture.read()[1]) is not None:
        images.append(frame)
    capture.release()
    camera = LiveMjpegCamera(25.0, images)
    broker = Broker(work)
    broker.set(True)
    watcher = watch_mqtt(broker.port, journal)
    receiver = read_notify(work / "notify.sock", journal)
    http_port = free_port()
    config = outage_config(work, args, camera, broker, http_port)
    os.environ.update({"NOTIFY_SOCKET": str(work / "notify.sock"), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
    service = start_service(config, work / "service.log")
    rss, outages = [], []
    duration = args.minutes * 60
    try:
        next_outage = 30.0
        while (elapsed := time.monotonic() - journal.started) < duration:
            if elapsed >= next_outage and camera.serving and next_outage + args.down_seconds < duration - 15:
                camera.serving = False
                journal.add("camera", "gone")
                outages.append([round(elapsed, 3), None])
            elif not camera.serving and elapsed >= outages[-1][0] + args.down_seconds:
                camera.serving = True
                journal.add("camera", "back")
                outages[-1][1] = round(elapsed, 3)
                next_outage += args.every_seconds
            if service.poll() is not None:  # it ended on its own: the run reports that it did not last
                break
            rss.append((round(elapsed, 1), round(rss_mb(service.pid), 1)))
            time.sleep(1.0)
        alive_until_the_stop = service.poll() is None
        service.send_signal(signal.SIGTERM)
        exit_code = service.wait(60)
    finally:
        if service.poll() is None:
            service.kill()
        time.sleep(1.0)
        watcher.loop_stop()
        watcher.disconnect()
        receiver.close()
        broker.set(False)
        camera.close()
    warm = [(t, mb) for t, mb in rss if t >= 20]  # the model loaded and the first outage not begun
    pings = [t for t, message in journal.of("notify") if message == "WATCHDOG=1"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    return {"minutes": args.minutes, "down_seconds": args.down_seconds, "every_seconds": args.every_seconds,
            "watchdog_s": WATCHDOG_S, "alive_until_the_stop": alive_until_the_stop, "exit_code": exit_code,
            "watchdog_pings": len(pings), "largest_watchdog_gap_s": round(max(gaps), 2) if gaps else None,
            "rss_mb_after_warm_up_last_max": [warm[0][1], warm[-1][1], max(m for _, m in warm)] if warm else None,
            "outages": outage_figures(journal, [tuple(o) for o in outages if o[1] is not None])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--down-seconds", type=float, default=20.0)
    parser.add_argument("--every-seconds", type=float, default=60.0)
    parser.add_argument("--media", default=os.environ.get("FER_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "camera_outage.json"))
    args = parser.parse_args()
    args.video = Path(args.media) / "media" / "test.mp4"
    if not args.video.exists():
        sys.exit(f"{args.video} not found: give --media (the shared data folder)")
    with tempfile.TemporaryDirectory(prefix="fer-outage-") as work:
        figures = run(args, Path(work))
    print(json.dumps(figures, indent=2))
    write_json(Path(args.out), {**provenance(), **figures})


if __name__ == "__main__":
    main()
