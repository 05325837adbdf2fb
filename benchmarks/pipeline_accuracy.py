"""End-to-end accuracy of detector + crop + classifier on PrivateTest faces placed into camera-like frames.

Classifying a 48x48 PrivateTest image directly measures the model; a camera
gives it whatever the detector and the crop make of a face somewhere in a
larger frame. Here each PrivateTest face is set into a frame (a real photo
without faces, in grey, 640x480), varied by one factor at a time and then by
all together:

- scale: face side 128..320 pixels (224 otherwise);   - position: anywhere with the face inside the frame;
- roll: -20..20 degrees;                - brightness: x0.6..1.4 of the whole frame;
- blur: Gaussian sigma 0..1.5 of the face's 48-pixel side;  - JPEG: quality 30..95.

Each frame goes through the runtime's own ``Runtime.process`` (detector, crop, shared preprocessing, classifier,
flip TTA as shipped); the face whose box holds the placed face's centre is scored. Two accuracies: over every
face (a face not found counts as wrong) and over the faces found, which isolates the crop from the detector (the
bundled short-range BlazeFace finds few faces under a quarter of the frame's width, fewer still for FER2013's
tight crops, which have no hair or ears around them). Crops compared (``--crops``): the default (margin 0,
levelled by the eye keypoints, blur restored), and each with one setting changed: ``detector.restore_blur`` off,
``detector.align`` off, ``detector.margin`` 0.1. The exact crop below is restored like the crop it stands beside.
Beside each accuracy over found faces stand the direct accuracy on the same faces (the 48x48 image, undegraded) and
the accuracy of an exact crop of the same frames (the placed face cut back out with the geometry it was placed with,
so it carries the frame's blur, brightness and JPEG but no detector error): pipeline against exact crop is what the
detector's box and the crop cost; exact crop against direct is what the degraded input costs any crop.

``--boxes`` splits the box's cost: each crop is also cut from the detector's box with the placed face's true side
put in (``placed-side``), its true centre (``placed-centre``) or both (``placed``); the detector's eye keypoints
still level it. (The placed face's side is that of its own 48x48 image, so ``placed`` reproduces FER2013's own
framing of each face, which varies from image to image, where the detector frames every face alike.)

    python benchmarks/pipeline_accuracy.py --data FER2013_DIR [--limit N]
    python benchmarks/pipeline_accuracy.py --data FER2013_DIR --split PublicTest --crops default \
        --boxes detector,placed-side,placed-centre,placed --out ...

Results: ``benchmarks/results/pipeline_accuracy.json`` and Markdown on stdout (docs/benchmarks.md).
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

from edge_runtime.config import Config, with_overrides  # noqa: E402
from edge_runtime.core.faces import Box  # noqa: E402
from edge_runtime.core.labels import LABEL_TO_INDEX  # noqa: E402
from edge_runtime.detectors import find_faces  # noqa: E402
from edge_runtime.pipeline import Runtime, classifier_input  # noqa: E402
from edge_runtime.service import build_runtime  # noqa: E402
from edge_runtime.sources import Frame  # noqa: E402
from lab.data import load_fer2013  # noqa: E402
from lab.provenance import provenance, write_json  # noqa: E402

FRAME_SIZE = (640, 480)
NEUTRAL = {"scale": 224.0, "roll": 0.0, "brightness": 1.0, "blur": 0.0, "jpeg": None, "centred": True}
RANGES = {"scale": (128.0, 320.0), "roll": (-20.0, 20.0), "brightness": (0.6, 1.4), "blur": (0.0, 1.5),
          "jpeg": (30, 95)}
CONDITIONS = ("none", "scale", "position", "roll", "brightness", "blur", "jpeg", "all")
# The crops compared, by the key --crops names them with: (label, config overrides).
GEOMETRIES = {"default": ("levelled, margin 0, blur restored (default)", {}),
              "unrestored": ("levelled, margin 0, not restored", {"detector.restore_blur": False}),
              "unlevelled": ("not levelled, margin 0, blur restored", {"detector.align": False}),
              "margin": ("levelled, margin 0.1, blur restored", {"detector.margin": 0.1})}
# The boxes crops are cut from (--boxes): the detector's, or with the placed face's true side and/or centre put in.
BOXES = ("detector", "placed-side", "placed-centre", "placed")


def draw_factors(condition: str, rng: np.random.Generator) -> dict:
    """The placement of one face: neutral, but for the condition's factor (every factor for ``all``)."""
    factors = dict(NEUTRAL)
    varied = RANGES.keys() if condition == "all" else [condition] if condition in RANGES else []
    for name in varied:
        low, high = RANGES[name]
        factors[name] = int(rng.integers(low, high + 1)) if name == "jpeg" else float(rng.uniform(low, high))
    if condition in ("position", "all"):
        factors["centred"] = False
    return factors


def place(face: np.ndarray, background: np.ndarray, factors: dict, rng: np.random.Generator):
    """A BGR frame with ``face`` set into ``background`` as ``factors`` say, the face centre in the frame, and the
    affine map from the 48x48 face to the frame."""
    side = factors["scale"]
    width, height = FRAME_SIZE
    reach = side * 0.75  # the rotated face stays inside the frame
    centre = ((width / 2, height / 2) if factors["centred"]
              else (rng.uniform(reach, width - reach), rng.uniform(reach, height - reach)))
    sigma = factors["blur"]
    source = cv2.GaussianBlur(face, (0, 0), sigma) if sigma > 0 else face
    scale = side / face.shape[0]
    # Pixel-exact: pixel i covers [i - 0.5, i + 0.5), so the face's centre is at (side - 1) / 2 in pixel indices, and
    # each face pixel lands on exactly the block of frame pixels it covers (a half-pixel slip would shift the face).
    middle = np.array([(face.shape[1] - 1) / 2, (face.shape[0] - 1) / 2])
    matrix = cv2.getRotationMatrix2D(tuple(middle), factors["roll"], scale)
    matrix[:, 2] += np.array(centre) - 0.5 - middle
    warped = cv2.warpAffine(source.astype(np.float32), matrix, FRAME_SIZE, flags=cv2.INTER_CUBIC)
    mask = cv2.warpAffine(np.ones_like(face, np.float32), matrix, FRAME_SIZE, flags=cv2.INTER_LINEAR)
    frame = background * (1 - mask) + warped * mask
    frame = np.clip(frame * factors["brightness"], 0, 255).astype(np.uint8)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if factors["jpeg"] is not None:
        _, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, factors["jpeg"]])
        frame = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return frame, centre, matrix


def oracle_crop(frame: np.ndarray, matrix: np.ndarray, side: float) -> np.ndarray:
    """The placed face cut back out of ``frame`` with the exact geometry it was placed with (position, scale and
    roll undone), at its own size in the frame: what a perfect detector and crop would hand the preprocessing."""
    inverse = cv2.invertAffineTransform(matrix)  # frame -> 48x48 face coordinates
    to_side = np.vstack([inverse, [0, 0, 1]])
    ratio = side / 48.0  # ... at the face's size in the frame, so the preprocessing downscales as it does
    to_side[:2] *= ratio
    to_side[:2, 2] += (ratio - 1) / 2  # pixel centres: face pixel i covers side pixels ratio * i .. ratio * (i + 1)
    size = int(round(side))
    return cv2.warpAffine(frame, to_side[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def with_placed(box: Box, boxes: str, centre: tuple[float, float], side: float) -> Box:
    """``box`` with the placed face's true side and/or centre (frame pixels) put in, as ``boxes`` (BOXES) says."""
    if boxes == "detector":
        return box
    true_centre = boxes in ("placed-centre", "placed")
    centre_x, centre_y = centre if true_centre else (box.x + box.w / 2, box.y + box.h / 2)
    width, height = (side, side) if boxes in ("placed-side", "placed") else (box.w, box.h)
    return box._replace(x=int(round(centre_x - width / 2)), y=int(round(centre_y - height / 2)),
                        w=int(round(width)), h=int(round(height)))


def holds(box, centre: tuple[float, float]) -> bool:
    """Whether a face box (x, y, w, h first) holds the placed face's centre: that is the face the benchmark scores."""
    x, y, w, h = box[:4]
    return x <= centre[0] <= x + w and y <= centre[1] <= y + h


def predicted_label(runtime: Runtime, frame: np.ndarray, centre: tuple[float, float], side: float,
                    boxes: str = "detector") -> str | None:
    """The raw label of the face whose box holds ``centre``, through the runtime (its crop cut from the box that
    ``boxes`` says, for a placed face of ``side`` pixels); None when no face holds it."""
    found = [with_placed(box, boxes, centre, side) for box in find_faces(runtime.detector, frame)]
    _, events = runtime.process(Frame(frame, "placed", 0, 0.0, 0.0, still=True), found)
    for event in events:
        if holds(event.box, centre):
            return event.raw_label
    return None


def run_condition(runtime, faces, labels, direct_right: np.ndarray, background, condition: str, seed: int,
                  boxes: str = "detector") -> dict:
    """One condition over every face: accuracy over all, share found, and accuracy over the found ones beside the
    direct accuracy on those same faces (crops cut from the box ``boxes`` names)."""
    rng = np.random.default_rng(seed)
    correct = found = direct_on_found = oracle_on_found = 0
    for face, label, direct in zip(faces, labels, direct_right, strict=True):
        factors = draw_factors(condition, rng)
        frame, centre, matrix = place(face, background, factors, rng)
        predicted = predicted_label(runtime, frame, centre, factors["scale"], boxes)
        if predicted is None:
            continue
        found += 1
        correct += LABEL_TO_INDEX[predicted] == label
        direct_on_found += bool(direct)
        oracle = classifier_input(oracle_crop(frame, matrix, factors["scale"]), runtime.crop)
        oracle_on_found += int(np.argmax(runtime.classifier.probabilities(oracle))) == label
    return {"accuracy": round(correct / len(labels), 4), "found": round(found / len(labels), 4),
            "accuracy_of_found": round(correct / max(1, found), 4),
            "direct_on_found": round(direct_on_found / max(1, found), 4),
            "oracle_crop_on_found": round(oracle_on_found / max(1, found), 4)}


def direct_right(runtime: Runtime, faces, labels) -> np.ndarray:
    """Whether the model gets each 48x48 image right by itself (the figure the pipeline is held to)."""
    predictions = [int(np.argmax(runtime.classifier.probabilities(face))) for face in faces]
    return np.array(predictions) == labels


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every placed-face benchmark takes: the data, the background, the model, and which faces and
    conditions."""
    parser.add_argument("--data", required=True, help="FER2013 (image folders or CSV)")
    parser.add_argument("--media", default=os.environ.get("FER_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
                        + "/media", help="folder with no-faces.jpg (the background)")
    parser.add_argument("--model", default=str(ROOT / "models" / "fer_cnn_lstm_int8.tflite"))
    parser.add_argument("--limit", type=int, default=0, help="use the first N faces of the split (0 = all)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))


def placement_inputs(data: str, split_name: str, limit: int, media: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces and labels of one FER2013 split (the first ``limit``, 0 = all) and the grey background frame."""
    split = load_fer2013(data).split(split_name)
    faces, labels = split.images, split.labels
    if limit:
        faces, labels = faces[:limit], labels[:limit]
    background = cv2.resize(cv2.imread(str(Path(media) / "no-faces.jpg"), cv2.IMREAD_GRAYSCALE), FRAME_SIZE)
    return faces, labels, background.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_placement_arguments(parser)
    parser.add_argument("--split", default="PrivateTest", help="PublicTest to try a change (tuning), PrivateTest to "
                        "report it once")
    parser.add_argument("--crops", default=",".join(GEOMETRIES), help="which crops to compare, of: "
                        + ", ".join(f"{key} ({label})" for key, (label, _) in GEOMETRIES.items()))
    parser.add_argument("--boxes", default="detector", help="which boxes to cut each crop from, of: "
                        + ", ".join(BOXES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline_accuracy.json"))
    args = parser.parse_args()
    started = provenance()  # the code as it was when the benchmark began
    faces, labels, background = placement_inputs(args.data, args.split, args.limit, args.media)
    results = {"faces": len(labels), "geometries": {}}
    for key in args.crops.split(","):
        crop_name, overrides = GEOMETRIES[key]
        settings = with_overrides(Config(), {"model.path": args.model, "source.spec": args.data,
                                             "detector.min_face": 24, **overrides})
        runtime = build_runtime(settings)
        right = direct_right(runtime, faces, labels)
        direct = round(float(right.mean()), 4)
        for boxes in args.boxes.split(","):
            name = crop_name if boxes == "detector" else f"{crop_name}, box: {boxes}"
            rows = {"direct 48x48": {"accuracy": direct, "found": 1.0, "accuracy_of_found": direct,
                                     "direct_on_found": direct, "oracle_crop_on_found": direct}}
            for number, condition in enumerate(args.conditions.split(",")):
                rows[condition] = run_condition(runtime, faces, labels, right, background, condition, seed=number,
                                                boxes=boxes)
                print(f"{name}, {condition}: {rows[condition]}", file=sys.stderr)
            results["geometries"][name] = rows
    write_json(args.out, {**started, "split": args.split, **results})
    names = list(results["geometries"])
    print("| condition | faces found | direct on those faces | exact crop of the same frames | "
          + " | ".join(f"{n}: found faces (all faces)" for n in names) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(names))
    for condition in ["direct 48x48", *args.conditions.split(",")]:
        cells = [results["geometries"][n][condition] for n in names]
        print(f"| {condition} | {cells[0]['found']:.3f} | {cells[0]['direct_on_found']:.4f} | "
              f"{cells[0]['oracle_crop_on_found']:.4f} | "
              + " | ".join(f"{c['accuracy_of_found']:.4f} ({c['accuracy']:.4f})" for c in cells) + " |")


if __name__ == "__main__":
    main()
