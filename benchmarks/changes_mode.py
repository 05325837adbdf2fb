"""How many messages ``output.mode = "changes"`` sends for a face in view: test.mp4 looped, played in real time.

The service (``edge-runtime run --loop --realtime --output-mode changes``) runs in a fresh process for
``--seconds`` of wall time, pinned to one core with `taskset -c 0` when available, and is then stopped with SIGTERM
as systemd stops it. Every line it writes is one message: ``appeared`` when a face appears, ``changed`` when its
steady state changes, ``left`` when it goes (here: at shutdown). test.mp4 (4.66 s) shows one face whose expression
changes once per play, and each loop jumps back to its start, so about two changes per loop are the footage's own.

    python benchmarks/changes_mode.py --seconds 25
    python benchmarks/changes_mode.py --seconds 25 --out /tmp/changes_mode_u10.json \
        --config my.toml     # options the script does not know go to edge-runtime run

Results: benchmarks/results/changes_mode.json and a summary on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
from one_core import runtime_cli, start  # noqa: E402

from lab.provenance import provenance, write_json  # noqa: E402


def clip_seconds(video: str) -> float:
    """The length of one play of ``video``: its frame count over its frame rate."""
    capture = cv2.VideoCapture(video)
    try:
        return capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()


def run_service(video: str, seconds: float, options: list[str]) -> list[dict]:
    """The messages the service (with ``options`` added) writes to stdout while it plays ``video`` in a loop for
    ``seconds``."""
    command = runtime_cli("run", "--source", video, "--loop", "--realtime", "--output-mode", "changes",
                          "--threads", "1", *options)
    service = start(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(seconds)
    service.send_signal(signal.SIGTERM)
    output, _ = service.communicate(timeout=30)
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def summarise(messages: list[dict], seconds: float, loop_s: float) -> dict:
    """Counts by message type, changes per loop of the clip, and the sequence of states."""
    kinds = Counter(message["type"] for message in messages)
    changes = kinds.get("changed", 0)
    loops = seconds / loop_s
    return {"seconds": seconds, "loop_s": round(loop_s, 3), "messages": len(messages), "by_type": dict(kinds),
            "changes": changes, "loops_played": round(loops, 2), "changes_per_loop": round(changes / loops, 2),
            "seconds_per_change": round(seconds / changes, 2) if changes else None,
            "states": [message["label"] for message in messages if message["type"] in ("appeared", "changed")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=os.environ.get("FER_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
                        + "/media/test.mp4")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "changes_mode.json"))
    args, service_options = parser.parse_known_args()
    started = provenance()
    loop_s = clip_seconds(args.video)
    summary = summarise(run_service(args.video, args.seconds, service_options), args.seconds, loop_s)
    write_json(args.out, {**started, "service_options": service_options, **summary})
    print(f"{summary['messages']} messages in {args.seconds:g} s ({summary['by_type']}): {summary['changes']} "
          f"changes, {summary['changes_per_loop']} per {loop_s:.2f} s loop, one every "
          f"{summary['seconds_per_change']} s; states: {' > '.join(summary['states'])}")


if __name__ == "__main__":
    main()
