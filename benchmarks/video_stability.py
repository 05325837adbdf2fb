"""How steady and how right the reading is on labelled video: ours (the runtime as shipped) and `fer`, same frames.

Videos:
- the CREMA-D clips in ``media/cremad`` (one acted expression each; ``labels.csv`` gives the acted label and what
  the crowd saw in the face alone);
- cut videos: every ordered pair of those clips with different acted labels, clip A whole, then clip B from a third
  of its length on (past its near-neutral onset), B's times continuing A's;
- the six clips in a row (the same actor speaking for about 12 s, his expression changing five times: the nearest
  thing to a talking head with known expressions in shared/), each after the first from a third of its length on;
- ``test.mp4`` (no labels: only its steadiness counts);
- the talking head, ``woman2.mp4`` from the `fer` package's sdist (one woman talking for 15.5 s; no labels: only its
  steadiness counts), when ``benchmarks/talking_head.py`` has fetched it or ``--talking-head`` names it.

Each runs at the file's own rate and subsampled to 5 frames a second (a Pi's rate), through the runtime exactly as
``edge-runtime run`` builds it (from ``Config``), with media time as the clock. Per video, for the largest face:
state changes (the first state is not a change; a new face's first state after a different one is) and changes of
the per-frame label (what an unsmoothed reading would do), time from the
first face to the held label, the held label (the most frequent state over the second half) against the acted label
and the crowd vote, frame accuracy (state = acted label), and for cut videos the delay from the cut to the state B
settles on (when that differs from the state at the cut).

`fer` (``--fer-python``: a Python with the `fer` package, e.g. a venv made with ``--system-site-packages`` beside
this project's TensorFlow, plus ``pip install fer==25.10.3 --no-deps``) runs its default pipeline (Haar + its
TFLite model) on the same frames in a child process. It has no temporal smoothing: its state is its per-frame label.

    python benchmarks/talking_head.py     # once: the talking head, into ~/.cache/fer-edge (not the repository)
    python benchmarks/video_stability.py --fer-python /tmp/fervenv/bin/python
    python benchmarks/video_stability.py --sweep          # our settings grid (smoothing), ours only
    python benchmarks/video_stability.py --table benchmarks/results/video_stability_sweep.json  # its table again

Results: ``benchmarks/results/video_stability.json`` (or ``video_stability_sweep.json``) and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from talking_head import DEFAULT_PATH as TALKING_HEAD  # noqa: E402

from edge_runtime.config import Config, with_overrides  # noqa: E402
from edge_runtime.service import build_runtime  # noqa: E402
from edge_runtime.sources import Frame, MediaClock, SourceHealth  # noqa: E402
from lab.provenance import file_sha256, provenance, write_json  # noqa: E402

PI_FPS = 5.0
CUT_TARGET_S = 1.0


@dataclass(frozen=True)
class Video:
    """Frames to run, as (file, frame index, media time), with what is known of the expression in them."""

    name: str
    kind: str  # "clip", "cut", "sequence", "footage" or "talking"
    frames: tuple[tuple[str, int, float], ...]
    acted: tuple[str, ...] = ()  # one label per part (a cut video has two)
    crowd: str | None = None
    cut_ts: float | None = None
    segment_starts: tuple[float, ...] = ()  # a sequence: where each acted part begins


def decode(path: Path) -> list[tuple[np.ndarray, float]]:
    """Every frame of a video with its media time in seconds (the runtime's own clock for files)."""
    capture = cv2.VideoCapture(str(path))
    clock = MediaClock(capture.get(cv2.CAP_PROP_FPS), realtime=False, wait=lambda _: None, now=lambda: 0.0)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append((image, clock.stamp(capture.get(cv2.CAP_PROP_POS_MSEC))))
    capture.release()
    return frames


def subsample(frames: tuple, fps: float | None) -> tuple:
    """The frames a camera at ``fps`` would deliver (all of them for ``None``)."""
    if fps is None:
        return frames
    kept, next_ts = [], frames[0][2]
    for frame in frames:
        if frame[2] >= next_ts - 1e-6:
            kept.append(frame)
            next_ts += 1 / fps
    return tuple(kept)


def build_videos(media: Path, decoded: dict[str, list], talking_head: Path | None = None) -> list[Video]:
    """The clips, their cut pairs, test.mp4 and the talking head (when given), from frames decoded once."""
    with open(media / "cremad" / "labels.csv") as handle:
        labels = list(csv.DictReader(handle))
    videos = []
    for row in labels:
        key = str(media / "cremad" / row["file"])
        frames = tuple((key, i, ts) for i, (_, ts) in enumerate(decoded[key]))
        videos.append(Video(Path(row["file"]).stem, "clip", frames, (row["acted"],), row["face_only_crowd_vote"]))
    for first, second in itertools.permutations(list(videos), 2):
        joined = _join(first.frames, second.frames)
        videos.append(Video(f"{first.acted[0]}>{second.acted[0]}", "cut", joined, (first.acted[0], second.acted[0]),
                            cut_ts=joined[len(first.frames)][2]))
    order = ("neutral", "happy", "sad", "angry", "fear", "disgust")  # fixed; neighbours differ in valence mostly
    clips = {video.acted[0]: video for video in videos if video.kind == "clip"}
    if set(order) <= set(clips):
        frames, starts = clips[order[0]].frames, [clips[order[0]].frames[0][2]]
        for label in order[1:]:
            length = len(frames)
            frames = _join(frames, clips[label].frames)
            starts.append(frames[length][2])
        videos.append(Video("six in a row", "sequence", frames, order, segment_starts=tuple(starts)))
    footage = str(media / "test.mp4")
    videos.append(Video("test.mp4", "footage", tuple((footage, i, ts) for i, (_, ts) in enumerate(decoded[footage]))))
    if talking_head is not None:
        key = str(talking_head)
        videos.append(Video("talking head", "talking", tuple((key, i, ts) for i, (_, ts) in enumerate(decoded[key]))))
    return videos


def _join(first: tuple, second: tuple) -> tuple:
    """``first`` whole, then ``second`` from a third of its length on (past its near-neutral onset), its times
    continuing ``first``'s at the same frame step."""
    part = second[len(second) // 3:]
    step = first[-1][2] - first[-2][2]
    offset = first[-1][2] + step - part[0][2]
    return first + tuple((key, i, ts + offset) for key, i, ts in part)


class ListSource:
    """Decoded frames as a runtime source (the benchmark's only stand-in: frames come from memory, not the file)."""

    def __init__(self, name: str, frames: list[Frame]):
        self.name, self._frames = name, frames

    def frames(self) -> Iterator[Frame]:
        yield from self._frames

    def health(self) -> SourceHealth:
        return SourceHealth(True, 0, 0)

    def close(self) -> None:
        pass


def run_ours(video: Video, decoded: dict, fps: float | None, runtime_parts, overrides: dict) -> list:
    """The largest face's (time, state, per-frame label) per frame through the runtime (``None``s where no face was
    found)."""
    detector, classifier = runtime_parts
    frames = subsample(video.frames, fps)
    settings = with_overrides(Config(), {"sinks.stdout": False, **overrides})
    source = ListSource(video.name, [Frame(decoded[key][i][0], video.name, n, ts, ts)
                                     for n, (key, i, ts) in enumerate(frames)])
    states: list = []
    runtime = build_runtime(settings, source=source, models=(detector, classifier))
    runtime.frame_listeners.append(lambda frame, events: states.append(
        (frame.timestamp, *((events[0].label, events[0].raw_label) if events else (None, None)))))
    runtime.run()
    return states


def ours_with(decoded: dict, runtime_parts, overrides: dict):
    """A ``system(video, fps)`` that runs ``run_ours`` with these settings (bound here, not to a loop variable)."""
    return lambda video, fps: run_ours(video, decoded, fps, runtime_parts, overrides)


FER_CHILD = r"""
import json, sys
import cv2
from fer.fer import FER
detector = FER()  # the package's defaults: Haar cascade + its quantized TFLite model
job = json.load(sys.stdin)
labels = {}
for path, indices in job.items():
    wanted, capture, index = set(indices), cv2.VideoCapture(path), 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            found = detector.detect_emotions(frame)
            if found:
                largest = max(found, key=lambda face: face["box"][2] * face["box"][3])
                labels[f"{path}#{index}"] = max(largest["emotions"], key=largest["emotions"].get)
            else:
                labels[f"{path}#{index}"] = None
        index += 1
print(json.dumps(labels))
"""


def fer_labels(fer_python: str, videos: list[Video]) -> dict[str, str | None]:
    """`fer`'s label for every frame any video uses (it keeps no state between frames, so once per frame)."""
    job: dict[str, set[int]] = {}
    for video in videos:
        for key, index, _ in video.frames:
            job.setdefault(key, set()).add(index)
    payload = json.dumps({key: sorted(indices) for key, indices in job.items()})
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([fer_python, "-c", FER_CHILD], input=payload, capture_output=True, text=True,
                            check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_fer(video: Video, fps: float | None, labels: dict) -> list:
    """`fer`'s label per frame: its state and its per-frame label are the same thing."""
    return [(ts, labels[f"{key}#{index}"], labels[f"{key}#{index}"]) for key, index, ts in subsample(video.frames, fps)]


def held_label(states: list, start: float, end: float) -> str | None:
    """The most frequent state over the second half of ``start..end``."""
    middle = (start + end) / 2
    counts = Counter(state for ts, state, _ in states if state is not None and middle <= ts <= end)
    return counts.most_common(1)[0][0] if counts else None


def score(video: Video, states: list) -> dict:
    """The per-video figures (see the module docstring)."""
    seen = [(ts, state) for ts, state, _ in states if state is not None]
    if not seen:
        return {"faces": 0}
    changes = sum(1 for (_, a), (_, b) in itertools.pairwise(seen) if a != b)
    raw = [label for _, state, label in states if state is not None]
    end = states[-1][0]
    held = held_label(states, states[0][0], end)
    result = {"faces": len(seen), "changes": changes, "raw_changes": sum(a != b for a, b in itertools.pairwise(raw)),
              "duration_s": round(end - states[0][0], 3), "held": held}
    result["time_to_held_s"] = round(next(ts for ts, state in seen if state == held) - seen[0][0], 3)
    if video.kind == "clip":
        result["held_is_acted"] = held == video.acted[0]
        result["held_is_crowd"] = held == video.crowd
        result["frame_accuracy"] = round(sum(state == video.acted[0] for _, state in seen) / len(seen), 4)
        result["raw_frame_accuracy"] = round(sum(raw == video.acted[0] for _, state, raw in states if state)
                                             / len(seen), 4)
    if video.kind == "cut":
        result.update(cut_figures(video, states, seen))
    if video.kind == "sequence":  # five true changes: what is beyond them is flicker
        result["extra_changes"] = changes - (len(video.acted) - 1)
        ends = (*video.segment_starts[1:], end + 1e-6)
        segments = zip(video.segment_starts, ends, video.acted, strict=True)
        result["segments_held_right"] = sum(held_label(states, start, stop) == acted for start, stop, acted in segments)
    return result


def cut_figures(video: Video, states: list, seen: list) -> dict:
    """The state at the cut, the one B settles on, and how long after the cut it arrived."""
    before = [state for ts, state in seen if ts < video.cut_ts]
    at_cut = before[-1] if before else None
    settled = held_label(states, video.cut_ts, states[-1][0])
    figures = {"state_at_cut": at_cut, "settled_after_cut": settled,
               "frame_accuracy": round(sum(state == (video.acted[0] if ts < video.cut_ts else video.acted[1])
                                           for ts, state in seen) / len(seen), 4)}
    if settled is None or settled == at_cut:
        figures["cut_delay_s"] = None  # nothing to change to: B reads as A's last state
    else:
        figures["cut_delay_s"] = round(next(ts for ts, state in seen if ts >= video.cut_ts and state == settled)
                                       - video.cut_ts, 3)
    return figures


def aggregate(rows: list[dict]) -> dict:
    """Means and counts over the videos of one kind."""
    rows = [row for row in rows if row.get("faces")]
    if not rows:
        return {"videos": 0}
    summary = {"videos": len(rows), "mean_changes": round(float(np.mean([r["changes"] for r in rows])), 2),
               "mean_time_to_held_s": round(float(np.mean([r["time_to_held_s"] for r in rows])), 2),
               "mean_raw_changes": round(float(np.mean([r["raw_changes"] for r in rows])), 2)}
    if rows and "held_is_acted" in rows[0]:
        summary["held_is_acted"] = sum(r["held_is_acted"] for r in rows)
        summary["held_is_crowd"] = sum(r["held_is_crowd"] for r in rows)
    if rows and "frame_accuracy" in rows[0]:
        summary["mean_frame_accuracy"] = round(float(np.mean([r["frame_accuracy"] for r in rows])), 4)
    delays = [r["cut_delay_s"] for r in rows if r.get("cut_delay_s") is not None]
    if rows and "cut_delay_s" in rows[0]:
        summary.update({"cuts_with_a_new_state": len(delays),
                        "mean_cut_delay_s": round(float(np.mean(delays)), 3) if delays else None,
                        "max_cut_delay_s": max(delays) if delays else None,
                        "cuts_within_target": sum(d <= CUT_TARGET_S for d in delays)})
    if rows and "extra_changes" in rows[0]:
        summary["extra_changes"] = sum(r["extra_changes"] for r in rows)
        summary["segments_held_right"] = sum(r["segments_held_right"] for r in rows)
    if rows and rows[0].get("duration_s"):
        seconds = sum(r["duration_s"] for r in rows)
        summary["seconds_per_change"] = round(seconds / max(1, sum(r["changes"] for r in rows)), 2)
    return summary


def evaluate(videos, decoded, systems) -> dict:
    """Every video at both rates through every system: per-video rows and per-kind summaries."""
    results = {}
    for system, runner in systems.items():
        for rate_name, fps in (("file rate", None), (f"{PI_FPS:g} fps", PI_FPS)):
            rows = {video.name: {"kind": video.kind, **score(video, runner(video, fps))} for video in videos}
            summaries = {kind: aggregate([r for r in rows.values() if r["kind"] == kind])
                         for kind in ("clip", "cut", "sequence", "footage", "talking")}
            results[f"{system} @ {rate_name}"] = {"summary": summaries, "videos": rows}
    return results


def system_label(name: str) -> str:
    """A results key as a table row: a sweep point's JSON becomes words, a system name stays as it is."""
    system, _, rate = name.rpartition(" @ ")
    if not system.startswith("{"):
        return name
    point = json.loads(system)
    words = {"smoothing.time_constant_s": "time constant {} s", "smoothing.dwell_s": "dwell {} s",
             "smoothing.margin": "margin {}", "smoothing.uncertain_after_s": "uncertain after {} s"}
    return ", ".join(words.get(key, key + " {}").format(value) for key, value in point.items()) + f" @ {rate}"


def against_true_changes(extra) -> str:
    """How the six in a row's changes compare with its 5 true ones, in words."""
    if extra == "-":
        return "-"
    return f"{extra} beyond the 5 true" if extra >= 0 else f"{-extra} fewer than the 5 true"


def talking_cell(talking: dict) -> str:
    """The talking head's state changes, seconds per change and per-frame label changes."""
    return f"{talking['mean_changes']:g} ({talking['seconds_per_change']}; {talking['mean_raw_changes']:g})"


def markdown(results: dict) -> str:
    lines = ["| system @ rate | clips: changes/clip | held = acted (of 6) | held = crowd | frame acc. "
             "| cuts: mean / max delay (s) | cuts within 1 s | six in a row: changes (s per change) "
             "| test.mp4: changes (s per change) | talking head: changes (s per change; per-frame label changes) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        clip, cut, sequence, footage, talking = (result["summary"][k]
                                                 for k in ("clip", "cut", "sequence", "footage", "talking"))
        lines.append(f"| {system_label(name)} | {clip['mean_changes']} | {clip['held_is_acted']} | "
                     f"{clip['held_is_crowd']} | "
                     f"{clip['mean_frame_accuracy']:.3f} | {cut['mean_cut_delay_s']} / {cut['max_cut_delay_s']} | "
                     f"{cut['cuts_within_target']} of {cut['cuts_with_a_new_state']} | "
                     f"{sequence.get('mean_changes', '-')} ({sequence.get('seconds_per_change', '-')}; "
                     f"{against_true_changes(sequence.get('extra_changes', '-'))}; parts held right: "
                     f"{sequence.get('segments_held_right', '-')} of 6) | "
                     f"{footage['mean_changes']:g} ({footage.get('seconds_per_change', '-')}) | "
                     + (talking_cell(talking) if talking["videos"] else "not fetched") + " |")
    return "\n".join(lines)


# The grid around the defaults; a wider one (time constant 0.8 s, dwell 0.6 s, margin 0.2) only held on to the
# first state longer: fewer held labels right and later cuts (docs/benchmarks.md).
def clip_table(results: dict, videos: list[Video]) -> str:
    """Per CREMA-D clip and system: the held label and the share of face frames read as the acted label (steady
    state; per-frame label in brackets), i.e. each acted class's recall on video."""
    clips = [v for v in videos if v.kind == "clip"]
    lines = ["| system @ rate | " + " | ".join(f"{v.acted[0]} (crowd: {v.crowd})" for v in clips) + " |",
             "|---|" + "---|" * len(clips)]
    for name, result in results.items():
        cells = []
        for video in clips:
            row = result["videos"][video.name]
            steady, per_frame = row.get("frame_accuracy", 0), row.get("raw_frame_accuracy", 0)
            cells.append(f"{row.get('held')}: {steady:.2f} ({per_frame:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SWEEP = {"smoothing.time_constant_s": (0.3, 0.5), "smoothing.dwell_s": (0.2, 0.3, 0.4), "smoothing.margin": (0.05, 0.1),
         "smoothing.uncertain_after_s": (1.0, 1.5, 2.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("FER_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
                        + "/media", help="folder with test.mp4 and cremad/")
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--fer-python", help="a Python with the `fer` package, for its side-by-side rows")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for our runs, e.g. smoothing.dwell_s=0.6 (repeatable)")
    parser.add_argument("--sweep", action="store_true", help="run our smoothing settings grid instead")
    parser.add_argument("--talking-head", type=Path, default=TALKING_HEAD,
                        help=f"the talking-head clip (default {TALKING_HEAD}; benchmarks/talking_head.py fetches it)")
    parser.add_argument("--table", type=Path, metavar="RESULTS_JSON",
                        help="print the table of a saved results file and run nothing")
    parser.add_argument("--out", help="results file (default: benchmarks/results/video_stability[_sweep].json)")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())["results"]))
        return
    started = provenance()  # the code as it was when the benchmark began
    media = Path(args.media)
    files = [media / "cremad" / name for name in sorted(os.listdir(media / "cremad")) if name.endswith(".mp4")]
    talking_head = args.talking_head if args.talking_head.is_file() else None
    if talking_head is None:
        print(f"note: no talking head at {args.talking_head}; run benchmarks/talking_head.py to include it",
              file=sys.stderr)
    decoded = {str(path): decode(path) for path in files + [media / "test.mp4"] + [talking_head] * bool(talking_head)}
    videos = build_videos(media, decoded, talking_head)
    base = {"model.path": args.model, **{k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}}
    probe = build_runtime(with_overrides(Config(), {**base, "source.spec": str(files[0])}))
    parts = (probe.detector, probe.classifier)
    if args.sweep:
        grid = [dict(zip(SWEEP, values, strict=True)) for values in itertools.product(*SWEEP.values())]
        systems = {json.dumps(point): ours_with(decoded, parts, {**base, **point}) for point in grid}
    else:
        systems = {"ours": ours_with(decoded, parts, base)}
        if args.fer_python:
            labels = fer_labels(args.fer_python, videos)
            systems["fer 25.10.3"] = lambda video, fps: run_fer(video, fps, labels)
    results = evaluate(videos, decoded, systems)
    name = "video_stability_sweep.json" if args.sweep else "video_stability.json"
    write_json(args.out or ROOT / "benchmarks" / "results" / name,
               {**started, "overrides": base, "results": results,
                "talking_head_sha256": file_sha256(talking_head) if talking_head else None})
    print(markdown(results))
    if not args.sweep:
        print()
        print(clip_table(results, videos))


if __name__ == "__main__":
    main()
