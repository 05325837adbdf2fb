"""Where a FER2013 face sits in its 48x48 image, measured with the runtime's own detector: the crop geometry.

The model learnt faces framed the way FER2013 frames them, so the runtime must
cut the same frame out of a camera image. This runs the bundled BlazeFace on
Training images (each upscaled and set in a grey canvas, so the detector sees
a face of a size it knows) and records, in units of the image side:

- the midpoint of the two eyes (x, y) and the distance between them;
- the roll (the angle of the line through the eyes);
- the detector's own box (after the runtime's reframing), its side and centre.

The medians and their spread go to ``benchmarks/results/crop_geometry.json``;
PublicTest is measured too, as a check that the figures are those of the
dataset and not of one split. What the runtime crops is then chosen by
``benchmarks/pipeline_accuracy.py``, which measures the accuracy each crop
gives (docs/benchmarks.md has both).

    python benchmarks/crop_geometry.py --data FER2013_DIR [--per-split 3000]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.detectors import DetectorOptions, find_faces, make_detector  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

UPSCALE = 4  # 48 -> 192 pixels: a face about the size the short-range model is made for
CANVAS = 384  # the upscaled face in the middle of a grey square twice its side


def place(face: np.ndarray) -> tuple[np.ndarray, int]:
    """The 48x48 face, upscaled, in the middle of a grey canvas; and its offset in the canvas."""
    big = cv2.resize(face, (48 * UPSCALE, 48 * UPSCALE), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((CANVAS, CANVAS), int(face.mean()), np.uint8)
    offset = (CANVAS - big.shape[0]) // 2
    canvas[offset:offset + big.shape[0], offset:offset + big.shape[1]] = big
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), offset


def measure(paths: list[Path], detector) -> dict[str, np.ndarray]:
    """Per image with exactly one face found: eye midpoint, eye distance, roll and box, in units of the side."""
    side = 48 * UPSCALE
    rows = []
    for path in paths:
        face = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        image, offset = place(face)
        boxes = find_faces(detector, image)
        if len(boxes) != 1 or boxes[0].eyes is None:
            continue
        box, eyes = boxes[0], boxes[0].eyes
        lx, ly, rx, ry = ((value - offset) / side for value in eyes)
        rows.append(((lx + rx) / 2, (ly + ry) / 2, math.hypot(rx - lx, ry - ly),
                     math.degrees(math.atan2(ry - ly, rx - lx)), box.w / side,
                     (box.x + box.w / 2 - offset) / side, (box.y + box.h / 2 - offset) / side))
    table = np.array(rows)
    names = ("eye_mid_x", "eye_mid_y", "eye_distance", "roll_deg", "box_side", "box_centre_x", "box_centre_y")
    return {name: table[:, i] for i, name in enumerate(names)}


def summarize(values: dict[str, np.ndarray], attempted: int) -> dict:
    summary = {"images": attempted, "found_one_face": int(len(values["roll_deg"]))}
    for name, column in values.items():
        summary[name] = {"median": round(float(np.median(column)), 4),
                         "p10": round(float(np.percentile(column, 10)), 4),
                         "p90": round(float(np.percentile(column, 90)), 4)}
    summary["abs_roll_deg_median"] = round(float(np.median(np.abs(values["roll_deg"]))), 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 in the image-folder layout (train/, test/)")
    parser.add_argument("--per-split", type=int, default=3000, help="images measured per split (a fixed sample)")
    args = parser.parse_args()
    detector = make_detector("blazeface", DetectorOptions(min_face=8, detect_width=0))
    rng = np.random.default_rng(0)
    results = {}
    for split, pattern in (("Training", "train/*/Training_*.jpg"), ("PublicTest", "test/*/PublicTest_*.jpg")):
        paths = sorted(Path(args.data).glob(pattern))
        sample = [paths[i] for i in rng.choice(len(paths), min(args.per_split, len(paths)), replace=False)]
        results[split] = summarize(measure(sample, detector), len(sample))
        row = results[split]
        print(f"{split}: {row['found_one_face']}/{row['images']} with one face; eye midpoint "
              f"({row['eye_mid_x']['median']}, {row['eye_mid_y']['median']}), eye distance "
              f"{row['eye_distance']['median']}, |roll| {row['abs_roll_deg_median']} deg, box side "
              f"{row['box_side']['median']} centred at ({row['box_centre_x']['median']}, "
              f"{row['box_centre_y']['median']})")
    write_json(ROOT / "benchmarks" / "results" / "crop_geometry.json",
               {**provenance(), "upscale": UPSCALE, "canvas": CANVAS, "splits": results})


if __name__ == "__main__":
    main()
