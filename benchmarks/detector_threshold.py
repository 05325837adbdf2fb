"""How sure BlazeFace must be of a face: faces found and false faces over a range of score thresholds.

    python benchmarks/detector_threshold.py --data FER2013_DIR

For each threshold (``detector.blazeface.score_threshold``), with the runtime's detector options:

- real footage, where every frame holds exactly one face: test.mp4 and the six CREMA-D clips. Frames where the face
  is missed, and frames with more than one box (a false face);
- no-faces.jpg and justin.jpg at 0.5x-2x and turned by quarter turns (16 versions each): false faces in the first,
  faces found in the second (one face each);
- with ``--data``: PublicTest faces placed into frames as in pipeline_accuracy.py (unvaried, blurred, every factor),
  through the runtime: the share found and the accuracy on the found faces (and, as there, the direct and exact-crop
  accuracy on them). PublicTest, because this chooses a default.

Results: benchmarks/results/detector_threshold.json and a Markdown table on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pipeline_accuracy import FRAME_SIZE, direct_right, run_condition  # noqa: E402

from edge_runtime.config import Config, with_overrides  # noqa: E402
from edge_runtime.detectors import DetectorOptions, find_faces, make_detector  # noqa: E402
from edge_runtime.detectors.blazeface import BlazeFaceOptions  # noqa: E402
from edge_runtime.service import build_runtime  # noqa: E402
from edge_runtime.sources import VideoFileSource  # noqa: E402
from lab.data import load_fer2013  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

THRESHOLDS = (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
PLACED_CONDITIONS = ("none", "blur", "all")


def versions(image: np.ndarray) -> list[np.ndarray]:
    """``image`` at 0.5x-2x, each in four quarter turns."""
    scaled = [cv2.resize(image, None, fx=factor, fy=factor) for factor in (0.5, 1.0, 1.5, 2.0)]
    return [np.ascontiguousarray(np.rot90(version, turns)) for version in scaled for turns in range(4)]


def footage_counts(threshold: float, videos: dict[str, list[np.ndarray]], photos: dict) -> dict:
    """Missed and doubled frames of the one-face footage; false faces in no-faces.jpg, faces in justin.jpg."""
    detector = make_detector("blazeface", DetectorOptions(max_faces=0), BlazeFaceOptions(score_threshold=threshold))
    counts = {name: [len(find_faces(detector, frame)) for frame in frames] for name, frames in videos.items()}
    return {"frames": sum(len(c) for c in counts.values()),
            "missed": {name: c.count(0) for name, c in counts.items()},
            "more_than_one": {name: sum(n > 1 for n in c) for name, c in counts.items()},
            "false_faces_in_no_faces_jpg": sum(len(find_faces(detector, v)) for v in photos["no-faces.jpg"]),
            "faces_in_justin_jpg": [len(find_faces(detector, v)) for v in photos["justin.jpg"]]}


def placed_counts(threshold: float, faces, labels, background) -> dict:
    """Share found and accuracy of the found, per placed-face condition: pipeline_accuracy's measurement, through the
    runtime with this threshold."""
    settings = with_overrides(Config(), {"detector.min_face": 24, "detector.blazeface.score_threshold": threshold})
    runtime = build_runtime(settings)
    right = direct_right(runtime, faces, labels)
    return {condition: run_condition(runtime, faces, labels, right, background, condition, seed=number)
            for number, condition in enumerate(PLACED_CONDITIONS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=os.environ.get("FER_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
                        + "/media")
    parser.add_argument("--data", default="", help="FER2013 (image folders or CSV), for the placed faces")
    parser.add_argument("--limit", type=int, default=1200, help="placed PublicTest faces (the first N)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detector_threshold.json"))
    args = parser.parse_args()
    started = provenance()
    media = Path(args.media)
    cv2.setNumThreads(1)
    videos = {path.name: [frame.image for frame in VideoFileSource(path).frames()]
              for path in [media / "test.mp4", *sorted((media / "cremad").glob("*.mp4"))]}
    photos = {name: versions(cv2.imread(str(media / name))) for name in ("no-faces.jpg", "justin.jpg")}
    placed = None
    if args.data:
        split = load_fer2013(args.data).split("PublicTest")
        placed = (split.images[: args.limit], split.labels[: args.limit], cv2.resize(
            cv2.imread(str(media / "no-faces.jpg"), cv2.IMREAD_GRAYSCALE), FRAME_SIZE).astype(np.float32))
    results = {}
    for threshold in THRESHOLDS:
        row = footage_counts(threshold, videos, photos)
        if placed:
            row["placed_publictest"] = placed_counts(threshold, *placed)
        results[str(threshold)] = row
        print(threshold, row, file=sys.stderr)
    write_json(args.out, {**started, "placed_faces": len(placed[1]) if placed else 0, "thresholds": results})
    print(markdown(results))


def markdown(results: dict) -> str:
    """One row per threshold."""
    placed = [f"placed {c}: found (acc. of found)" for c in PLACED_CONDITIONS]
    lines = ["| threshold | footage frames missed | footage frames with a false face | false faces in no-faces.jpg "
             "(16 versions) | justin.jpg versions with its face | " + " | ".join(placed) + " |",
             "|---:|---:|---:|---:|---:|" + "---:|" * len(placed)]
    for threshold, row in results.items():
        cells = [f"{row['placed_publictest'][c]['found']:.3f} ({row['placed_publictest'][c]['accuracy_of_found']:.4f})"
                 if "placed_publictest" in row else "-" for c in PLACED_CONDITIONS]
        lines.append(f"| {threshold} | {sum(row['missed'].values())} of {row['frames']} | "
                     f"{sum(row['more_than_one'].values())} | {row['false_faces_in_no_faces_jpg']} | "
                     f"{sum(n == 1 for n in row['faces_in_justin_jpg'])} of 16 | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
