"""Soak test of the runtime as a service: looped video, MQTT through a real mosquitto, faults mid-run.

Two scenarios, each comparing the events produced (the JSONL sink) with the
events a subscriber received, by id (capture time, frame, face):

- ``outage`` (default): runs `edge-runtime run --loop` for --minutes as fast as
  it decodes, stops the broker for --outage-seconds in the middle and restarts
  the service halfway through that outage (SIGTERM, then a new process on the
  same spool).
- ``chaos`` (``--chaos``, root: it mounts a tmpfs): the video at its own frame
  rate, as a camera delivers it; the broker flaps (5 s down, 5 s up); the spool
  lives on a small tmpfs that is filled to the brim for one episode (disk full);
  a garbage line is written into the spool; the service is restarted in the
  middle of an outage. Lost events must be exactly the ones the sink counted as
  dropped, and RSS must stay flat.

    python benchmarks/soak.py --minutes 10
    python benchmarks/soak.py --chaos --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def event_id(event: dict) -> tuple:
    """What identifies an event across sinks: capture time, frame and face."""
    return event["ts"], event["frame"], event["face"]


def subscribe(port: int, received: list, lock: threading.Lock, client_id: str):
    """A persistent-session QoS 1 subscriber to ``fer/soak`` that appends each event's id to ``received``."""
    import paho.mqtt.client as mqtt

    def on_message(client, userdata, message):
        with lock:
            received.append(event_id(json.loads(message.payload)))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("fer/soak", qos=1)
    client.on_message = on_message
    client.reconnect_delay_set(1, 2)
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    return client


def wait_until_quiet(received: list, lock: threading.Lock, quiet_s: float = 5.0, limit_s: float = 180.0) -> None:
    """Wait until the subscriber has received nothing new for ``quiet_s`` (the broker delivers a backlog at its own
    pace, a few in flight at a time), or ``limit_s`` passed."""
    deadline, last_count, last_change = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        with lock:
            count = len(received)
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            return
        time.sleep(0.5)


def service_config(work: Path, args, broker_port: int, http_port: int, *, spool: Path, client_id: str,
                   source_extra: dict | None = None, mqtt_extra: dict | None = None) -> Path:
    """The soaked service's config (looped video, JSONL sink for the produced events, MQTT with a spool), written to
    ``work/config.toml``; ``*_extra`` add keys to their sections."""
    sections = {
        "model": {"path": str(args.model), "threads": args.threads},
        "source": {"spec": str(args.video), "loop": True, **(source_extra or {})},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "sinks": {"stdout": False, "file": str(work / "events.jsonl"), "file_max_bytes": 2_000_000_000},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic": "fer/soak", "client_id": client_id,
                 "spool_file": str(spool), "discovery": False, **(mqtt_extra or {})},
        "service": {"stop_timeout_s": 30},
    }
    config = work / "config.toml"
    config.write_text("".join(f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
                              for name, keys in sections.items()))
    return config

def main() -> None:
    from lab.provenance import write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "media" / "test.mp4"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chaos", action="store_true", help="the chaos scenario (see above; needs root)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.chaos:
        from chaos_soak import run_chaos

        run_chaos(args, args.out or str(ROOT / "benchmarks" / "results" / "soak_chaos.json"))
        return
    args.out = args.out or str(ROOT / "benchmarks" / "results" / "soak.json")


    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    work = Path(tempfile.mkdtemp(prefix="fer-soak-"))
    broker_port, http_port = free_port(), free_port()
    # max_queued_messages 0: the broker holds everything for the subscriber while it reconnects (its default, 1000,
    # would discard a backlog the sink sends first, and the soak would count the broker's drops as the sink's).
    (work / "mosquitto.conf").write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                                         f"persistence_location {work}/\nautosave_interval 1\nmax_queued_messages 0\n")

    def start_broker():
        process = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return process

    broker = start_broker()
    received: list[tuple] = []
    lock = threading.Lock()

    subscriber = subscribe(broker_port, received, lock, "soak-subscriber")

    config = service_config(work, args, broker_port, http_port, spool=work / "spool.jsonl", client_id="fer-edge-soak",
                            mqtt_extra={"max_backoff_s": 5})
    def start_service():
        return subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(work / "service.log", "a"),
                                env={**os.environ, "FER_LOG_LEVEL": "INFO"})

    service = start_service()
    started = time.monotonic()
    samples = []
    duration = args.minutes * 60
    outage_start = duration / 2 - args.outage_seconds / 2
    outage_done = restarted = False
    restart = {}
    while time.monotonic() - started < duration:
        time.sleep(10)
        elapsed = time.monotonic() - started
        try:
            frames = metric(http_port, "fer_edge_frames_total")
        except OSError:
            frames = float("nan")
        samples.append({"t_s": round(elapsed, 1), "rss_mb": round(rss_mb(service.pid), 1), "frames": frames})
        if not outage_done and elapsed >= outage_start and broker.poll() is None:
            broker.terminate()
            broker.wait(10)
            outage_at = elapsed
        if not restarted and broker.poll() is not None and elapsed >= outage_start + args.outage_seconds / 2:
            restart["rss_mb_before"] = rss_mb(service.pid)
            stopping = time.monotonic()
            service.send_signal(signal.SIGTERM)
            restart["exit_code"] = service.wait(60)
            restart["stop_seconds"] = round(time.monotonic() - stopping, 2)
            restart["at_s"] = round(time.monotonic() - started, 1)
            service = start_service()
            restarted = True
        if not outage_done and broker.poll() is not None and elapsed >= outage_start + args.outage_seconds:
            broker = start_broker()
            outage_done = True
    dropped = metric(http_port, "fer_edge_sink_dropped_events_total")
    service.send_signal(signal.SIGTERM)
    service.wait(60)
    wait_until_quiet(received, lock)  # the subscriber takes what the broker still holds for it
    subscriber.loop_stop()
    broker.terminate()
    produced = [event_id(json.loads(line)) for line in open(work / "events.jsonl")]
    delivered = set(received)
    warm = [s for s in samples if s["t_s"] >= 60]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "minutes": args.minutes, "threads": args.threads, "model": Path(args.model).name,
        "frames_processed": samples[-1]["frames"] if samples else 0,
        "rss_mb_first_sample": samples[0]["rss_mb"], "rss_mb_after_1_min": warm[0]["rss_mb"] if warm else None,
        "rss_mb_end": samples[-1]["rss_mb"], "rss_mb_max": max(s["rss_mb"] for s in samples),
        "broker_outage_seconds": args.outage_seconds, "broker_stopped_at_s": round(outage_at, 1),
        "service_restart_during_outage": restart,
        "events_produced": len(produced), "distinct_event_ids_produced": len(set(produced)),
        "events_received_by_subscriber": len(received), "distinct_events_delivered": len(delivered),
        "events_lost": len(set(produced) - delivered), "duplicates_delivered": len(received) - len(delivered),
        # Where the lost events were made (media seconds from the first event). A block that the sink replayed first
        # after a broker restart points at the broker: one that does not restore the subscriber's session drops
        # what arrives before the subscriber has subscribed again (docs/deploy.md).
        "lost_made_at_s": sorted(round(ts - min(t for t, _, _ in produced), 2)
                                 for ts, _, _ in set(produced) - delivered)[:3000],
        "events_dropped_by_sink": dropped, "exit_code": service.returncode, "samples": samples,
    }
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
