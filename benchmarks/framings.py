"""Does reading a face at several framings of its box, and averaging, bring the pipeline closer to direct?

FER2013 frames each face a little differently (its box side spans 0.81-1.20 of the image), the model learnt each
face at its own framing, and the detector frames every face alike ("What the box costs" in docs/benchmarks.md). This
reads each placed face of ``benchmarks/pipeline_accuracy.py`` (the same frames: same conditions, same seeds) at the
default crop and at crops grown or shrunk by a margin (a fraction of the side on every side), each through the
shipped classifier with its flip TTA, and scores the average of each set of framings on the faces the detector
found, beside the direct accuracy of the same faces' 48x48 images.

    python benchmarks/framings.py --data FER2013_DIR                       # PublicTest: choose a set
    python benchmarks/framings.py --data FER2013_DIR --split PrivateTest   # report it once

Results: ``benchmarks/results/framings_<split>.json`` and Markdown on stdout (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline_accuracy import (  # noqa: E402
    CONDITIONS,
    add_placement_arguments,
    direct_right,
    draw_factors,
    holds,
    place,
    placement_inputs,
)

from edge_runtime.config import Config, with_overrides  # noqa: E402
from edge_runtime.detectors import face_crop, find_faces  # noqa: E402
from edge_runtime.pipeline import Runtime, classifier_input  # noqa: E402
from edge_runtime.service import build_runtime  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

# Sets of crop margins whose readings are averaged; the first is the runtime's one crop (margin 0).
FRAMING_SETS = {"one crop (default)": (0.0,), "±0.025": (-0.025, 0.0, 0.025), "±0.05": (-0.05, 0.0, 0.05),
                "±0.075": (-0.075, 0.0, 0.075), "±0.1": (-0.1, 0.0, 0.1),
                "±0.05 and ±0.1": (-0.1, -0.05, 0.0, 0.05, 0.1)}
MARGINS = sorted({margin for margins in FRAMING_SETS.values() for margin in margins})


def readings(runtime: Runtime, frame: np.ndarray, centre: tuple[float, float]) -> dict[float, np.ndarray] | None:
    """The classifier's probabilities for the face whose box holds ``centre``, at each margin; None if not found."""
    for box in find_faces(runtime.detector, frame):
        if holds(box, centre):
            crops = {margin: face_crop(frame, box, margin, runtime.crop.align) for margin in MARGINS}
            return {margin: runtime.classifier.probabilities(classifier_input(crop, runtime.crop))
                    for margin, crop in crops.items() if crop is not None}
    return None


def run_condition(runtime: Runtime, faces, labels, right: np.ndarray, background, condition: str) -> dict:
    """Accuracy of each framing set on the faces found under ``condition``, and direct accuracy on them."""
    rng = np.random.default_rng(CONDITIONS.index(condition))  # pipeline_accuracy's seed: the same frames
    hits = {name: 0 for name in FRAMING_SETS}
    found = direct = 0
    for face, label, direct_is_right in zip(faces, labels, right, strict=True):
        factors = draw_factors(condition, rng)
        frame, centre, _ = place(face, background, factors, rng)
        by_margin = readings(runtime, frame, centre)
        if by_margin is None or 0.0 not in by_margin:
            continue
        found += 1
        direct += bool(direct_is_right)
        for name, margins in FRAMING_SETS.items():
            mean = np.mean([by_margin[m] for m in margins if m in by_margin], axis=0)
            hits[name] += int(np.argmax(mean)) == label
    return {"found": round(found / len(labels), 4), "direct_on_found": round(direct / max(1, found), 4),
            "accuracy_of_found": {name: round(hit / max(1, found), 4) for name, hit in hits.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_placement_arguments(parser)
    parser.add_argument("--split", default="PublicTest", help="PublicTest to choose, PrivateTest to report once")
    parser.add_argument("--out", help="results file (default: benchmarks/results/framings_<split>.json)")
    args = parser.parse_args()
    started = provenance()  # the code as it was when the benchmark began
    faces, labels, background = placement_inputs(args.data, args.split, args.limit, args.media)
    runtime = build_runtime(with_overrides(Config(), {"model.path": args.model, "source.spec": args.data,
                                                      "detector.min_face": 24}))
    right = direct_right(runtime, faces, labels)
    rows = {}
    for condition in args.conditions.split(","):
        rows[condition] = run_condition(runtime, faces, labels, right, background, condition)
        print(f"{condition}: {rows[condition]}", file=sys.stderr)
    write_json(args.out or ROOT / "benchmarks" / "results" / f"framings_{args.split.lower()}.json",
               {**started, "split": args.split, "faces": len(labels), "framing_sets": FRAMING_SETS,
                "conditions": rows})
    print("| condition | faces found | direct on those faces | "
          + " | ".join(f"{name}: accuracy (gap)" for name in FRAMING_SETS) + " |")
    print("|---|---:|---:|" + "---:|" * len(FRAMING_SETS))
    for condition, row in rows.items():
        cells = [f"{acc:.4f} ({(row['direct_on_found'] - acc) * 100:.1f})" for acc in row["accuracy_of_found"].values()]
        print(f"| {condition} | {row['found']:.3f} | {row['direct_on_found']:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
