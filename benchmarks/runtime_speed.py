"""End-to-end speed of the edge runtime on a video, and of the `fer` PyPI package on the same video.

Each measurement runs in a fresh process (so start-up, first event and peak
RSS are real), pinned to one core with `taskset -c 0` for the 1-thread runs:

    python benchmarks/runtime_speed.py --model models/fer_cnn_lstm_int8.tflite --fer-python /tmp/fervenv/bin/python

Results: benchmarks/results/runtime_speed.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from one_core import pinned, quiet_environment

ROOT = Path(__file__).resolve().parents[1]

FER_CHILD = r"""
import json, resource, sys, time
spawned = float(sys.argv[1]); video = sys.argv[2]
import cv2
from fer.fer import FER
detector = FER()  # the package's defaults: Haar cascade + its quantized TFLite model
capture = cv2.VideoCapture(video)
frames = faces = 0
first = None
started = time.perf_counter()
while True:
    ok, frame = capture.read()
    if not ok:
        break
    found = detector.detect_emotions(frame)
    frames += 1
    faces += len(found)
    if found and first is None:
        first = time.time() - spawned
wall = time.perf_counter() - started
print(json.dumps({"frames": frames, "faces": faces, "fps": frames / wall, "first_event_s": first,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(args) -> None:
    """Run our runtime once on the video and print one JSON line of measurements."""
    import resource

    from edge_runtime.config import Config, with_overrides
    from edge_runtime.service import build_runtime
    from edge_runtime.sinks import CallbackSink

    first = []
    settings = with_overrides(Config(), {"model.path": args.model, "source.spec": args.video,
                                         "model.threads": args.threads, "detector.every_n": args.every_n,
                                         "detector.name": args.detector, "model.tta": args.tta})
    runtime = build_runtime(settings, sinks=[CallbackSink(lambda e: first.append(time.time()) if not first else None)])
    started = time.perf_counter()
    stats = runtime.run()
    wall = time.perf_counter() - started
    print(json.dumps({"frames": stats.frames, "faces": stats.faces, "frames_with_faces": stats.frames_with_faces,
                      "fps": stats.frames / wall, "first_event_s": first[0] - args.spawned if first else None,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "stages_ms": runtime.timer.summary_ms()}))


def measure(command: list[str], pin: bool) -> dict:
    spawned = time.time()  # the child reports its first event relative to this moment
    result = subprocess.run(pinned([part.replace("SPAWNED", repr(spawned)) for part in command], pin),
                            capture_output=True, text=True, cwd=ROOT, env=quiet_environment())
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_run(command: list[str], pin: bool, repeats: int) -> dict:
    runs = [measure(command, pin) for _ in range(repeats)]
    best = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]
    best["fps_runs"] = [round(r["fps"], 1) for r in runs]
    best["first_event_s_runs"] = [round(r["first_event_s"], 2) for r in runs if r["first_event_s"] is not None]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "media" / "test.mp4"))
    parser.add_argument("--fer-python", help="python of a venv with the `fer` package, for the side-by-side run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtime_speed.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--every-n", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--detector", default="blazeface", help=argparse.SUPPRESS)
    parser.add_argument("--tta", default="flip", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cores = os.cpu_count() or 1
    ours = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", args.model, "--video", args.video]
    from lab.provenance import provenance, write_json  # provenance: the commit the figures were measured at

    results = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": f"{cores} cores",
               "video": Path(args.video).name, "provenance": provenance(), "runs": {}}
    plan = []
    for detector in ("blazeface", "haar"):
        with_detector = ours + ["--detector", detector]
        plan += [(f"edge_runtime + {detector}, 1 thread, pinned to 1 core, detect every 2nd frame",
                  with_detector + ["--threads", "1"], True),
                 (f"edge_runtime + {detector}, 1 thread, pinned to 1 core, detect every frame",
                  with_detector + ["--threads", "1", "--every-n", "1"], True),
                 (f"edge_runtime + {detector}, {cores} threads, detect every 2nd frame",
                  with_detector + ["--threads", str(cores)], False)]
    # Every run above uses the runtime's default flip TTA (two invokes per face); this one shows what it costs.
    plan.insert(1, ("edge_runtime + blazeface, 1 thread, pinned to 1 core, detect every 2nd frame, --tta none",
                    ours + ["--detector", "blazeface", "--threads", "1", "--tta", "none"], True))
    if args.fer_python:
        plan.append(("fer 25.10.3 (Haar + TFLite defaults), pinned to 1 core",
                     [args.fer_python, "-c", FER_CHILD, "SPAWNED", args.video], True))
    for name, command, pin in plan:
        if command[0] == sys.executable:
            command = command + ["--spawned", "SPAWNED"]
        results["runs"][name] = median_run(command, pin, args.repeats)
        print(f"{name}: {results['runs'][name]['fps']:.1f} fps", file=sys.stderr)
    write_json(args.out, results)
    header = (f"| run | fps (median of {args.repeats}) | first event (s) | peak RSS (MB) | frames with a face "
              "| decode / detect / preprocess / inference (ms, mean) |")
    lines = [header, "|---|---:|---:|---:|---:|---|"]
    for name, run in results["runs"].items():
        stages = run.get("stages_ms")
        stage_names = ("decode", "detect", "preprocess", "inference")
        stage_text = " / ".join(f"{stages[s]['mean_ms']:.2f}" for s in stage_names) if stages else "-"
        with_face = run.get("frames_with_faces", "-")
        lines.append(f"| {name} | {run['fps']:.1f} | {run['first_event_s']:.2f} | {run['peak_rss_mb']:.0f} "
                     f"| {with_face} | {stage_text} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
