"""Fit the bundled keypoint framing: where FER2013 framed a face, from BlazeFace's box and keypoints.

Each Training face is placed into a frame as ``benchmarks/pipeline_accuracy.py``
places faces (one condition drawn per face: nothing varied, scale, position,
roll, brightness, blur, JPEG, or all of them), and the bundled BlazeFace runs
on it exactly as the runtime runs it (downscaled to ``detector.detect_width``).
Where it finds the placed face, the face's true framing (the side and centre
of its 48x48 image in the frame) is known, so each found face gives one row:
the features of ``edge_runtime.detectors.framing`` and the framing's targets.
A ridge regression fitted on those rows is written to
``edge_runtime/detectors/blazeface_framing.json``; PublicTest faces, placed
the same way, score it (R^2 of each target), and the results go to
``benchmarks/results/framing_fit.json``. Real footage has no known framing,
so there the results say how the fitted framing compares with the fixed one:
the mean ratio of their sides on each video of ``media/cremad``, ``test.mp4``
and the talking head (when ``benchmarks/talking_head.py`` has fetched it).

    python benchmarks/framing_fit.py --data FER2013_DIR [--limit N] [--ridge R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pipeline_accuracy as placement  # noqa: E402
from talking_head import DEFAULT_PATH as TALKING_HEAD  # noqa: E402

from edge_runtime.detectors import DetectorOptions, make_detector  # noqa: E402
from edge_runtime.detectors.base import detection_input  # noqa: E402
from edge_runtime.detectors.blazeface import FRAMING_SCALE, BlazeFaceOptions  # noqa: E402
from edge_runtime.detectors.framing import (  # noqa: E402
    BUNDLED_FRAMING,
    TARGETS,
    Framing,
    features,
    fit_framing,
    targets,
)
from lab.provenance import provenance, write_json  # noqa: E402


def framing_rows(detector, faces: np.ndarray, background: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and known targets for each face the detector finds where it was placed (one condition drawn
    per face)."""
    rng = np.random.default_rng(seed)
    rows, known = [], []
    for face in faces:
        condition = placement.CONDITIONS[rng.integers(len(placement.CONDITIONS))]
        factors = placement.draw_factors(condition, rng)
        frame, centre, _ = placement.place(face, background, factors, rng)
        small, scale = detection_input(detector.options, frame)
        found, box = detector.detections(small)
        # The placed face's framing in the detector's normalized coordinates.
        truth = Framing((centre[0] * scale + box.pad_x) / box.side, (centre[1] * scale + box.pad_y) / box.side,
                        factors["scale"] * scale / box.side)
        holding = [d for d in found if d.x0 <= truth.centre_x <= d.x1 and d.y0 <= truth.centre_y <= d.y1]
        if not holding:
            continue
        row, target = features(holding[0]), targets(holding[0], truth)
        if row is not None:
            rows.append(row)
            known.append(target)
    return np.array(rows), np.array(known)


def side_against_fixed(detector, model, path: Path) -> dict:
    """Over the frames of a video where a face is found with plausible eyes: the mean and spread of the fitted
    framing's side (held to its bounds) against the fixed framing's (the largest face)."""
    video, ratios = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        found, _ = detector.detections(detection_input(detector.options, frame)[0])
        row = features(max(found, key=lambda d: d.x1 - d.x0)) if found else None
        if row is not None:
            ratios.append(float(np.clip(model.predict(row)[0, 0], *model.side_range)) / FRAMING_SCALE)
    return {"frames": len(ratios), "mean": round(float(np.mean(ratios)), 4), "sd": round(float(np.std(ratios)), 4)}


def r_squared(known: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Share of each target's variance the prediction explains."""
    residual = ((known - predicted) ** 2).sum(axis=0)
    total = ((known - known.mean(axis=0)) ** 2).sum(axis=0)
    return {name: round(float(1 - r / t), 4) for name, r, t in zip(TARGETS, residual, total, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 (image folders or CSV)")
    parser.add_argument("--media", default=str(ROOT.parent / "shared" / "data" / "media"),
                        help="folder with no-faces.jpg (the background)")
    parser.add_argument("--limit", type=int, default=0, help="use the first N faces of each split (0 = all)")
    parser.add_argument("--ridge", type=float, nargs="+", default=[1.0],
                        help="ridge penalties to score on PublicTest; the first is the one written")
    parser.add_argument("--model-out", default=str(BUNDLED_FRAMING))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "framing_fit.json"))
    args = parser.parse_args()
    started = provenance()
    detector = make_detector("blazeface", DetectorOptions(), BlazeFaceOptions(framing="fixed"))
    splits = {}
    for number, split in enumerate(("Training", "PublicTest")):
        faces, _, background = placement.placement_inputs(args.data, split, args.limit, args.media)
        splits[split] = (len(faces), *framing_rows(detector, faces, background, seed=number))
        print(f"{split}: {len(splits[split][1])} of {len(faces)} faces found with plausible eyes", file=sys.stderr)
    (_, rows, known), (_, test_rows, test_known) = splits["Training"], splits["PublicTest"]
    scores = {}
    for ridge in args.ridge:
        model = fit_framing(rows, known, ridge)
        scores[str(ridge)] = r_squared(test_known, model.predict(test_rows))
        print(f"ridge {ridge}: PublicTest R^2 {scores[str(ridge)]}", file=sys.stderr)
    model = fit_framing(rows, known, args.ridge[0])
    media = Path(args.media)
    videos = sorted((media / "cremad").glob("*.mp4")) + [media / "test.mp4"] + [TALKING_HEAD] * TALKING_HEAD.is_file()
    footage = {path.name: side_against_fixed(detector, model, path) for path in videos}
    print(f"fitted side / fixed side on real footage: {footage}", file=sys.stderr)
    summary = {"faces": {split: faces for split, (faces, _, _) in splits.items()},
               "rows": {split: len(split_rows) for split, (_, split_rows, _) in splits.items()},
               "ridge": args.ridge[0], "publictest_r_squared": scores,
               "publictest_target_sd": dict(zip(TARGETS, np.round(test_known.std(axis=0), 4).tolist(), strict=True)),
               "side_range": model.side_range, "max_offset": round(model.max_offset, 4),
               "real_footage_side_against_fixed": footage}
    write_json(args.model_out, {**started, **summary, **model.to_json()})
    write_json(args.out, {**started, **summary})


if __name__ == "__main__":
    main()
