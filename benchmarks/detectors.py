"""Face detectors side by side on the shared media: faces found, time per detection, and box framing.

    taskset -c 0 python benchmarks/detectors.py

For each registered detector that can be built here (YuNet needs its ONNX
file: pass --yunet-model), on test.mp4: frames with a face, mean and p90
detection time with one thread (the runtime's default detect_width of 240),
and on justin.jpg / no-faces.jpg the number of faces. For BlazeFace, the
median side ratio and centre offset of its (reframed) box against the Haar
box over the frames where both found one face: ~1.0 and ~0.0 mean the crops
the classifier sees are framed alike whichever detector is used.

Results: benchmarks/results/detectors.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.core.errors import FerError  # noqa: E402
from edge_runtime.detectors import DETECTORS, DetectorOptions, find_faces, make_detector  # noqa: E402
from edge_runtime.detectors.yunet import YuNetOptions  # noqa: E402
from edge_runtime.sources import VideoFileSource  # noqa: E402


def main() -> None:
    from lab.provenance import write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=str(ROOT.parent / "shared" / "data" / "media"))
    parser.add_argument("--yunet-model", default="", help="face_detection_yunet_2023mar.onnx, to include YuNet")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detectors.json"))
    args = parser.parse_args()
    media = Path(args.media)
    cv2.setNumThreads(1)
    frames = [frame.image for frame in VideoFileSource(media / "test.mp4").frames()]
    photos = {name: cv2.imread(str(media / name)) for name in ("justin.jpg", "no-faces.jpg")}
    results = {"command": " ".join(["detectors.py", *sys.argv[1:]]), "video": "test.mp4", "frames": len(frames),
               "detectors": {}}
    boxes_per_detector = {}
    for name in DETECTORS:
        try:
            backend = YuNetOptions(model_path=args.yunet_model) if name == "yunet" else None
            detector = make_detector(name, DetectorOptions(), backend)
        except FerError as error:
            results["detectors"][name] = {"skipped": str(error)}
            continue
        find_faces(detector, frames[0])  # warm-up: first-call allocations are not detection time
        seconds, boxes = [], []
        for frame in frames:
            started = time.perf_counter()
            boxes.append(find_faces(detector, frame))
            seconds.append(time.perf_counter() - started)
        boxes_per_detector[name] = boxes
        results["detectors"][name] = {
            "frames_with_face": sum(1 for found in boxes if found),
            "mean_ms": 1000 * float(np.mean(seconds)), "p90_ms": 1000 * float(np.percentile(seconds, 90)),
            **{f"faces_in_{photo}": len(find_faces(detector, image)) for photo, image in photos.items()},
        }
    if "haar" in boxes_per_detector and "blazeface" in boxes_per_detector:
        pairs = [(h[0], b[0]) for h, b in zip(boxes_per_detector["haar"], boxes_per_detector["blazeface"], strict=True)
                 if len(h) == 1 and len(b) == 1]
        ratios = np.array([(b.w / h.w, (b.x + b.w / 2 - h.x - h.w / 2) / h.w, (b.y + b.h / 2 - h.y - h.h / 2) / h.h)
                           for h, b in pairs])
        results["detectors"]["blazeface"]["framing_vs_haar"] = {
            "frames": len(pairs), "median_side_ratio": float(np.median(ratios[:, 0])),
            "median_centre_offset_x": float(np.median(ratios[:, 1])),
            "median_centre_offset_y": float(np.median(ratios[:, 2]))}
    write_json(args.out, results)
    lines = ["| detector | frames with a face (of %d) | mean / p90 ms per detection | faces in justin.jpg | "
             "faces in no-faces.jpg |" % len(frames), "|---|---:|---:|---:|---:|"]
    for name, row in results["detectors"].items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} | | | |")
            continue
        lines.append(f"| {name} | {row['frames_with_face']} | {row['mean_ms']:.1f} / {row['p90_ms']:.1f} | "
                     f"{row['faces_in_justin.jpg']} | {row['faces_in_no-faces.jpg']} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
