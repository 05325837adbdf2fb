"""What the live view costs: processing rate with the preview off, on with nobody watching, and on with one viewer.

Each case runs the service on test.mp4 (looped) in a fresh process, one interpreter thread, pinned to one core with
`taskset -c 0` when available; after a warm-up, the processed-frames counter from /metrics is read over a window.
The viewer is a client reading /stream.mjpg as a browser would.

    python benchmarks/preview_cost.py --seconds 10

Results: benchmarks/results/preview_cost.json and a Markdown table on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from one_core import runtime_cli, start

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def frames_total(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("fer_edge_frames_total"))


def watch(port: int, stop: threading.Event, counter: list[int]) -> None:
    """Read the MJPEG stream like a browser; count the JPEGs received."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=10) as stream:
        while not stop.is_set():
            line = stream.readline()
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
                stream.readline()
                stream.read(length)
                counter[0] += 1


def measure(case: str, args) -> dict:
    port = free_port()
    command = runtime_cli("run", "--model", args.model, "--source", args.video, "--loop", "--threads", "1",
                          "--http", f"127.0.0.1:{port}", "--no-stdout")
    if case != "preview off":
        command.append("--preview")
    service = start(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop, received = threading.Event(), [0]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                frames_total(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if case == "preview on, one viewer":
            threading.Thread(target=watch, args=(port, stop, received), daemon=True).start()
        time.sleep(args.warmup)
        start_frames, start_received, started = frames_total(port), received[0], time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        fps = (frames_total(port) - start_frames) / elapsed
        return {"case": case, "frames_per_second": round(fps, 1),
                "viewer_jpegs_per_second": round((received[0] - start_received) / elapsed, 1)}
    finally:
        stop.set()
        service.terminate()
        service.wait(30)


def main() -> None:
    from lab.provenance import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "media" / "test.mp4"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "preview_cost.json")
    args = parser.parse_args()
    rows = [measure(case, args) for case in ("preview off", "preview on, nobody watching", "preview on, one viewer")]
    base = rows[0]["frames_per_second"]
    for row in rows:
        row["relative_to_off"] = round(row["frames_per_second"] / base, 3) if base else None
    write_json(args.out, {"command": f"python benchmarks/preview_cost.py --seconds {args.seconds:g}", "rows": rows})
    print("| case | frames per second (1 thread, 1 core) | relative to preview off | JPEGs per second to the viewer |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['case']} | {row['frames_per_second']:.1f} | {row['relative_to_off']:.2f} | "
              f"{row['viewer_jpegs_per_second']:.1f} |")


if __name__ == "__main__":
    main()
