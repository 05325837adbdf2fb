"""The chaos scenario of benchmarks/soak.py: a flapping broker, a full disk, a poisoned spool and a restart.

The timeline scales with --minutes (shown for 10): the broker flaps 5 s down / 5 s up from 60 s to 540 s; from
200 s to 260 s the spool's tmpfs is filled to the brim by a ballast file and the broker is held down, so the spool
cannot take events; at 300 s a garbage line is appended to the spool during an outage; from 390 s the broker is
held down for 40 s and the service is restarted 20 s into it; the last minute the broker stays up so the backlog
drains. Run as root (it mounts a 4 MB tmpfs for the spool).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from soak import Broker, free_port, restart_service, sample, service_config, start_service, subscribe, wait_until_quiet

FLAP_SECONDS = 5.0
GARBAGE = b"garbage written into the spool by the chaos soak\n"


class Timeline:
    """When the broker is up, when the disk is full, and when the garbage and the restart happen."""

    def __init__(self, duration: float):
        scale = duration / 600.0
        self.duration = duration
        self.flap = (60 * scale, 540 * scale)
        self.disk_full = (200 * scale, 260 * scale)
        self.garbage_at = 300 * scale
        self.restart_outage = (390 * scale, 390 * scale + 40)
        self.restart_at = self.restart_outage[0] + 20
        self.held_down = [self.disk_full, (self.garbage_at, self.garbage_at + 10), self.restart_outage]

    def broker_up(self, t: float) -> bool:
        if any(start <= t < end for start, end in self.held_down):
            return False
        if self.flap[0] <= t < self.flap[1]:
            return int((t - self.flap[0]) // FLAP_SECONDS) % 2 == 1  # down first
        return True


def _fill(folder: Path) -> Path:
    """Write a ballast file that takes every free byte of the file system under ``folder``."""
    ballast = folder / "ballast"
    with open(ballast, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return ballast


def run_chaos(args, out: str) -> None:
    """Run the chaos scenario for ``args.minutes`` and write its figures to ``out``."""
    from lab.provenance import provenance, write_json

    started = provenance()  # the code as it was when the soak began

    work = Path(tempfile.mkdtemp(prefix="fer-chaos-"))
    spool_fs = work / "spool-fs"
    spool_fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(spool_fs)], check=True)
    try:
        result = _run(args, work, spool_fs)
    finally:
        subprocess.run(["umount", str(spool_fs)], check=False)
    result["provenance"] = started
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


def _run(args, work: Path, spool_fs: Path) -> dict:
    timeline = Timeline(args.minutes * 60)
    broker = Broker(work)
    broker.set(True)
    received: list[tuple] = []
    lock = threading.Lock()
    subscriber = subscribe(broker.port, received, lock, "chaos-subscriber")
    http_port = free_port()
    spool = spool_fs / "spool.jsonl"
    config = service_config(work, args, broker.port, http_port, spool=spool, client_id="fer-edge-chaos",
                            source_extra={"realtime": True},
                            mqtt_extra={"max_backoff_s": 2, "buffer_size": 500, "spool_max_bytes": 100_000_000})
    log_path = work / "service.log"
    service = start_service(config, log_path)
    started = time.monotonic()
    samples, ballast, garbage_written, restart = [], None, False, {}
    next_sample = 10.0
    while (t := time.monotonic() - started) < timeline.duration:
        broker.set(timeline.broker_up(t))
        if ballast is None and timeline.disk_full[0] <= t < timeline.disk_full[1]:
            ballast = _fill(spool_fs)
        if ballast is not None and t >= timeline.disk_full[1] and ballast.exists():
            ballast.unlink()
        if not garbage_written and t >= timeline.garbage_at and spool.exists() and spool.stat().st_size:
            with open(spool, "ab") as handle:  # O_APPEND: lands between two whole lines of the service's
                handle.write(GARBAGE)
            garbage_written = round(t, 1)
        if not restart and t >= timeline.restart_at:
            service, restart = restart_service(service, config, log_path)
            restart["at_s"] = round(t, 1)
        if t >= next_sample:
            next_sample += 10.0
            samples.append(sample(t, http_port, service, broker_up=broker.up))
        time.sleep(0.25)
    broker.set(True)
    time.sleep(5)
    service.send_signal(signal.SIGTERM)
    exit_code = service.wait(60)
    wait_until_quiet(received, lock)  # the subscriber takes what the broker still holds for it
    subscriber.loop_stop()
    broker.set(False)
    return _figures(args, work, log_path, received, samples, broker, restart, garbage_written, exit_code, timeline)


def _figures(args, work, log_path, received, samples, broker, restart, garbage_written, exit_code, timeline) -> dict:
    produced = [(e["ts"], e["frame"], e["face"]) for e in map(json.loads, open(work / "events.jsonl"))]
    delivered = set(received)
    log_text = log_path.read_text()
    dropped = sum(int(n) for n in re.findall(r"sink mqtt dropped (\d+) events in this run", log_text))
    lost = set(produced) - delivered
    # Where the lost events were made: seconds before the next broker stop (a loss inside the broker shows as a
    # cluster just before its stops) and whether that was inside the disk-full episode.
    started = min(ts for ts, _, _ in produced) if produced else 0.0
    before_stop = []
    for ts, _, _ in lost:
        later = [stop - ts for stop in broker.stop_times if stop >= ts]
        before_stop.append(round(min(later), 1) if later else None)
    by_process: dict[int, list] = {}
    for row in samples:
        by_process.setdefault(row["pid"], []).append(row["rss_mb"])
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "scenario": "chaos", "minutes": args.minutes, "threads": args.threads, "model": Path(args.model).name,
        "broker_stops": broker.stops, "disk_full_s": [round(x, 1) for x in timeline.disk_full],
        "garbage_line_written_at_s": garbage_written,
        "service_restart_during_outage": restart,
        "events_produced": len(produced), "distinct_event_ids_produced": len(set(produced)),
        "events_received_by_subscriber": len(received), "distinct_events_delivered": len(delivered),
        "events_lost": len(lost), "events_dropped_and_counted": dropped,
        "lost_but_not_counted": len(lost) - dropped,
        "duplicates_delivered": len(received) - len(delivered),
        "lost_made_at_s": sorted(round(ts - started, 1) for ts, _, _ in lost)[:2000],
        "lost_seconds_before_the_next_broker_stop": sorted(x for x in before_stop if x is not None)[:2000],
        "spool_lines_set_aside": len(re.findall(r"is not a message .* set aside", log_text)),
        "disk_refusals_logged": log_text.count("is not writable"),
        "sender_crashes": log_text.count("MQTT sender crashed"),
        "rss_mb_per_process": {str(pid): {"first": rss[0], "after_1_min": rss[min(6, len(rss) - 1)], "end": rss[-1],
                                          "max": max(rss)} for pid, rss in by_process.items()},
        "exit_code": exit_code, "work_folder": str(work), "samples": samples,
    }
