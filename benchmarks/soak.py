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
    return write_config(work / "config.toml", sections)


def write_config(path: Path, sections: dict[str, dict]) -> Path:
    """``sections`` as a TOML config file at ``path`` (values written as JSON, which TOML reads for these types)."""
    path.write_text("".join(f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
                            for name, keys in sections.items()))
    return path


class Broker:
    """mosquitto with persistence, so queued messages for the subscriber's session survive its restarts."""

    def __init__(self, work: Path):
        self.port = free_port()
        self.conf = work / "mosquitto.conf"
        # max_queued_messages 0: no cap on what the broker holds for the subscriber while it reconnects. With
        # mosquitto's default (1000), a backlog the sink sends first after an outage overflows the subscriber's
        # queue inside the broker, and the soak would count the broker's drops as the sink's. "user root": started
        # as root, mosquitto would otherwise switch to its own user, which cannot write the persistence file here.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {work}/\nautosave_interval 1\nmax_queued_messages 0\n"
                             "user root\n")
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process: subprocess.Popen | None = None
        self.stops = 0
        self.stop_times: list[float] = []  # wall-clock times of the stops

    @property
    def up(self) -> bool:
        """Whether the broker process is running."""
        return self.process is not None and self.process.poll() is None

    def set(self, up: bool, settle_s: float = 0.3) -> None:
        """Start or stop the broker (nothing if it already is so); a start waits ``settle_s`` for it to listen."""
        if up and not self.up:
            self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            time.sleep(settle_s)
        elif not up and self.up:
            self.stop_times.append(time.time())
            self.process.terminate()
            self.process.wait(10)
            self.stops += 1


def start_service(config: Path, log_path: Path) -> subprocess.Popen:
    """`edge-runtime run --config CONFIG` as a service process, its log appended to ``log_path``."""
    with open(log_path, "a") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log)


def sample(elapsed: float, http_port: int, service: subprocess.Popen, **extra) -> dict:
    """One sample of the service: its resident memory and the frames it has processed (NaN while it restarts)."""
    try:
        frames = metric(http_port, "fer_edge_frames_total")
    except OSError:
        frames = float("nan")
    return {"t_s": round(elapsed, 1), "pid": service.pid, "rss_mb": round(rss_mb(service.pid), 1), "frames": frames,
            **extra}


def restart_service(service: subprocess.Popen, config: Path, log_path: Path) -> tuple[subprocess.Popen, dict]:
    """SIGTERM the service, wait for it to exit, start it again; the new process and how the stop went."""
    record = {"rss_mb_before": rss_mb(service.pid)}
    stopping = time.monotonic()
    service.send_signal(signal.SIGTERM)
    record["exit_code"] = service.wait(60)
    record["stop_seconds"] = round(time.monotonic() - stopping, 2)
    return start_service(config, log_path), record


def run_outage(args, out: str) -> None:
    """The outage scenario: the broker stopped for ``args.outage_seconds`` mid-run, the service restarted halfway
    through the outage; the figures go to ``out``."""
    from lab.provenance import provenance, write_json

    started = provenance()  # the code as it was when the soak began
    work = Path(tempfile.mkdtemp(prefix="fer-soak-"))
    broker = Broker(work)
    broker.set(True, settle_s=1.0)
    received: list[tuple] = []
    lock = threading.Lock()
    subscriber = subscribe(broker.port, received, lock, "soak-subscriber")
    http_port = free_port()
    config = service_config(work, args, broker.port, http_port, spool=work / "spool.jsonl",
                            client_id="fer-edge-soak", mqtt_extra={"max_backoff_s": 5})
    samples, restart, stopped_at, dropped, exit_code = _outage_timeline(args, broker, config, work / "service.log",
                                                                        http_port)
    wait_until_quiet(received, lock)  # the subscriber takes what the broker still holds for it
    subscriber.loop_stop()
    broker.set(False)
    produced = [event_id(json.loads(line)) for line in open(work / "events.jsonl")]
    result = _outage_figures(args, samples, restart, stopped_at, produced, received, dropped, exit_code)
    result["provenance"] = started
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


def _outage_timeline(args, broker: Broker, config: Path, log_path: Path, http_port: int):
    """Run the service for ``args.minutes``, the broker down for ``args.outage_seconds`` in the middle and the
    service restarted halfway through that; the samples, the restart, when the broker stopped, the sink's dropped
    count and the exit code."""
    service = start_service(config, log_path)
    started = time.monotonic()
    duration = args.minutes * 60
    outage = (duration / 2 - args.outage_seconds / 2, duration / 2 + args.outage_seconds / 2)
    samples, restart, stopped_at = [], {}, None
    while time.monotonic() - started < duration:
        time.sleep(10)
        elapsed = time.monotonic() - started
        samples.append(sample(elapsed, http_port, service))
        in_outage = outage[0] <= elapsed < outage[1]
        if in_outage and stopped_at is None:
            stopped_at = round(elapsed, 1)
        broker.set(not in_outage, settle_s=1.0)
        if not restart and not broker.up and elapsed >= outage[0] + args.outage_seconds / 2:
            service, restart = restart_service(service, config, log_path)
            restart["at_s"] = round(time.monotonic() - started, 1)
    broker.set(True, settle_s=1.0)
    dropped = metric(http_port, "fer_edge_sink_dropped_events_total")
    service.send_signal(signal.SIGTERM)
    return samples, restart, stopped_at, dropped, service.wait(60)


def _outage_figures(args, samples, restart, stopped_at, produced, received, dropped, exit_code) -> dict:
    delivered = set(received)
    warm = [s for s in samples if s["t_s"] >= 60]
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "minutes": args.minutes, "threads": args.threads, "model": Path(args.model).name,
        "frames_processed": samples[-1]["frames"] if samples else 0,
        "rss_mb_first_sample": samples[0]["rss_mb"], "rss_mb_after_1_min": warm[0]["rss_mb"] if warm else None,
        "rss_mb_end": samples[-1]["rss_mb"], "rss_mb_max": max(s["rss_mb"] for s in samples),
        "broker_outage_seconds": args.outage_seconds,
        "broker_stopped_at_s": stopped_at,
        "service_restart_during_outage": restart,
        "events_produced": len(produced), "distinct_event_ids_produced": len(set(produced)),
        "events_received_by_subscriber": len(received), "distinct_events_delivered": len(delivered),
        "events_lost": len(set(produced) - delivered), "duplicates_delivered": len(received) - len(delivered),
        # Where the lost events were made (media seconds from the first event). A block that the sink replayed first
        # after a broker restart points at the broker: one that does not restore the subscriber's session drops
        # what arrives before the subscriber has subscribed again (docs/deploy.md).
        "lost_made_at_s": sorted(round(ts - min(t for t, _, _ in produced), 2)
                                 for ts, _, _ in set(produced) - delivered)[:3000],
        "events_dropped_by_sink": dropped, "exit_code": exit_code, "samples": samples,
    }


def main() -> None:
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
    else:
        run_outage(args, args.out or str(ROOT / "benchmarks" / "results" / "soak.json"))


if __name__ == "__main__":
    main()
