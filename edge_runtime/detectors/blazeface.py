"""BlazeFace (MediaPipe's face detector) on the same TFLite interpreter as the emotion model.

The short-range model (128x128 input, faces within about 2 m of the camera,
229 KB, Apache-2.0, see ``NOTICE.md`` beside it) ships inside this package, so
``--detector blazeface`` works right after ``pip install`` with no OpenCV
cascade and no download. MediaPipe's other two BlazeFace files (back camera,
256x256; full range, 192x192) can be given as ``detector.blazeface.model_path``: the
anchor layout is chosen from the model's input size and checked against its
output count.

The model's raw output is 896 (or 2304) candidate boxes, each an offset from a
fixed anchor plus a logit. Everything from raw output to :class:`Box` is a pure
function here (anchors, decoding, weighted non-maximum suppression, undoing the
letterbox), so it is tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edge_runtime.core.errors import ConfigError, ModelError
from edge_runtime.core.faces import Box, Eyes
from edge_runtime.core.interpreter import make_interpreter
from edge_runtime.core.records import setting
from edge_runtime.detectors.base import DetectorOptions

BUNDLED_MODEL = Path(__file__).with_name("blazeface_short_range.tflite")
# Boxes that overlap this much are one face: MediaPipe blends them rather than dropping all but one.
NMS_IOU = 0.3
# The candidates that shape a face's box. A face is accepted from detector.blazeface.score_threshold on, but its box
# blends only the candidates at least this sure (the best one alone when none is): weaker neighbours sit partly off
# the face, and blending them in would move the box whenever the threshold moves (docs/benchmarks.md, "How sure a
# face must be").
BOX_MIN_SCORE = 0.65
# BlazeFace boxes run from the brows to the chin; FER2013 faces (and the Haar default) include the forehead.
# Growing the box about its centre by this factor, then moving it up by this fraction of the grown side, frames it like
# the Haar detector's boxes: the medians of the Haar/BlazeFace side ratio and centre offset over the 109 frames of
# test.mp4 where both found one face (benchmarks/detectors.py measures them again).
FRAMING_SCALE = 1.18
FRAMING_SHIFT_Y = -0.025


class AnchorGrid(NamedTuple):
    """One feature-map level: cells are ``stride`` input pixels apart, each with ``per_cell`` anchors."""

    stride: int
    per_cell: int


# MediaPipe's SSD anchor settings per model, keyed by input side. Layers that share a stride are merged:
# the short-range model's four layers (strides 8, 16, 16, 16; two anchors each) become 16x16x2 + 8x8x6 = 896.
ANCHOR_LAYOUTS: dict[int, tuple[AnchorGrid, ...]] = {
    128: (AnchorGrid(8, 2), AnchorGrid(16, 6)),    # short range (front camera)
    256: (AnchorGrid(16, 2), AnchorGrid(32, 6)),   # back camera
    192: (AnchorGrid(4, 1),),                      # full range
}


class Detection(NamedTuple):
    """A decoded face in normalized input coordinates (0..1 of the model's square input), with its eye centres."""

    score: float
    x0: float
    y0: float
    x1: float
    y1: float
    eye0_x: float = 0.0  # the first keypoint: the person's right eye (on the image's left)
    eye0_y: float = 0.0
    eye1_x: float = 0.0  # the second: the person's left eye
    eye1_y: float = 0.0


class Letterbox(NamedTuple):
    """How a frame was padded to a square and resized, to map boxes back to frame pixels."""

    side: int    # side of the padded square, in frame pixels
    pad_x: int   # frame offset inside the square
    pad_y: int


def make_anchors(input_size: int, layout: tuple[AnchorGrid, ...]) -> np.ndarray:
    """Anchor centres, ``(N, 2)`` as (x, y) in 0..1, in the order the model emits its candidates."""
    centres = []
    for grid in layout:
        cells = input_size // grid.stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, grid.per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int,
           threshold: float) -> list[Detection]:
    """Candidates scoring at least ``threshold``, as boxes in 0..1 input coordinates.

    ``regressors`` is ``(N, 16)``: centre offset, width and height in input
    pixels relative to the anchor, then six keypoints as offsets from the
    anchor (right eye, left eye, nose, mouth, right ear, left ear; the eyes
    are kept); ``logits`` is ``(N,)``. Anchors have unit size, so width and
    height are simply divided by the input side.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
    keep = np.flatnonzero(scores >= threshold)
    raw = regressors[keep, :8].astype(np.float64) / input_size
    anchor_x, anchor_y = anchors[keep, 0], anchors[keep, 1]
    cx, cy = raw[:, 0] + anchor_x, raw[:, 1] + anchor_y
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    eyes = raw[:, 4:8] + np.stack([anchor_x, anchor_y, anchor_x, anchor_y], axis=1)
    return [Detection(float(s), float(x - w), float(y - h), float(x + w), float(y + h), *map(float, e))
            for s, x, y, w, h, e in zip(scores[keep], cx, cy, half_w, half_h, eyes, strict=True) if w > 0 and h > 0]


def _iou(a: Detection, b: Detection) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter)


def weighted_nms(detections: list[Detection], iou_threshold: float = NMS_IOU,
                 box_min_score: float = BOX_MIN_SCORE) -> list[Detection]:
    """One detection per face: each cluster of overlapping candidates becomes the score-weighted mean box of its
    members scoring at least ``box_min_score`` (of its best member alone when none does), with the best score.

    Averaging (rather than keeping only the best candidate) is what MediaPipe
    does for BlazeFace: neighbouring anchors each see part of the face, and
    their mean box jitters less from frame to frame.
    """
    remaining = sorted(detections, key=lambda d: -d.score)
    merged = []
    while remaining:
        best = remaining[0]
        overlaps = [_iou(best, d) for d in remaining]
        cluster = [d for d, overlap in zip(remaining, overlaps, strict=True) if overlap > iou_threshold]
        remaining = [d for d, overlap in zip(remaining, overlaps, strict=True) if overlap <= iou_threshold]
        shaping = [d for d in cluster if d.score >= min(box_min_score, best.score)]
        weights = np.array([d.score for d in shaping])
        coords = np.array([d[1:] for d in shaping]) * weights[:, None]
        merged.append(Detection(best.score, *(coords.sum(axis=0) / weights.sum()).tolist()))
    return merged


def letterbox(image: np.ndarray, input_size: int) -> tuple[np.ndarray, Letterbox]:
    """The frame padded to a centred square (aspect ratio kept) and resized to the model's input, as RGB."""
    height, width = image.shape[:2]
    side = max(height, width)
    pad_x, pad_y = (side - width) // 2, (side - height) // 2
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    square = cv2.copyMakeBorder(rgb, pad_y, side - height - pad_y, pad_x, side - width - pad_x,
                                cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > input_size else cv2.INTER_LINEAR
    return cv2.resize(square, (input_size, input_size), interpolation=interpolation), Letterbox(side, pad_x, pad_y)


def to_frame_box(detection: Detection, box: Letterbox, scale: float = FRAMING_SCALE,
                 shift_y: float = FRAMING_SHIFT_Y) -> Box:
    """A normalized detection as a frame-pixel :class:`Box`, reframed like a Haar box.

    The box is grown by ``scale`` about its centre and moved down by
    ``shift_y`` of its height (negative = up); it may extend past the frame,
    and :func:`crop_face` clips it.
    """
    width = (detection.x1 - detection.x0) * box.side * scale
    height = (detection.y1 - detection.y0) * box.side * scale
    centre_x = (detection.x0 + detection.x1) / 2 * box.side - box.pad_x
    centre_y = (detection.y0 + detection.y1) / 2 * box.side - box.pad_y + shift_y * height
    eyes = Eyes(detection.eye0_x * box.side - box.pad_x, detection.eye0_y * box.side - box.pad_y,
                detection.eye1_x * box.side - box.pad_x, detection.eye1_y * box.side - box.pad_y)
    return Box(int(round(centre_x - width / 2)), int(round(centre_y - height / 2)), int(round(width)),
               int(round(height)), detection.score, eyes)


@dataclass(frozen=True)
class BlazeFaceOptions:
    """``[detector.blazeface]``"""

    model_path: str = setting("", "another MediaPipe BlazeFace .tflite, e.g. the back-camera or full-range model "
                              "(empty = the bundled short-range model)")
    # 0.6: finds the face in every frame of the one-face footage, where 0.7 misses 3 of test.mp4's, with no false face
    # (MediaPipe's own default, 0.5, lets one through beside the face on test.mp4). Boxes blend only candidates of
    # BOX_MIN_SCORE or more, so a lower threshold adds faces without moving boxes. docs/benchmarks.md, "How sure a
    # face must be".
    score_threshold: float = setting(0.6, "confidence needed to accept a face (lower finds more blurred or partial "
                                     "faces and risks false ones)", minimum=0.0, maximum=1.0)


class BlazeFaceDetector:
    """MediaPipe BlazeFace on LiteRT: the bundled short-range model unless ``model_path`` names another."""

    Options = BlazeFaceOptions

    def __init__(self, options: DetectorOptions, backend: BlazeFaceOptions = BlazeFaceOptions()):
        self.options, self.backend = options, backend
        path = Path(backend.model_path) if backend.model_path else BUNDLED_MODEL
        if not path.is_file():
            raise ConfigError(f"detector.blazeface.model_path {str(path)!r} does not exist; leave it empty to use the "
                              "bundled short-range BlazeFace model")
        self.interpreter = make_interpreter(path, threads=options.threads)
        (input_detail,) = self.interpreter.get_input_details()
        _, height, width, channels = input_detail["shape"]
        layout = ANCHOR_LAYOUTS.get(int(height))
        if height != width or channels != 3 or layout is None:
            raise ModelError(f"{path.name} is not a BlazeFace model this runtime knows: input {height}x{width}x"
                             f"{channels}, expected a square RGB input of side {', '.join(map(str, ANCHOR_LAYOUTS))}")
        self.input_size = int(height)
        self.anchors = make_anchors(self.input_size, layout)
        self.input_index = input_detail["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: int(d["shape"][-1]), reverse=True)
        if len(outputs) != 2 or [int(d["shape"][1]) for d in outputs] != [len(self.anchors)] * 2:
            raise ModelError(f"{path.name}: outputs {[list(d['shape']) for d in outputs]} do not match the "
                             f"{len(self.anchors)} anchors of a {self.input_size}x{self.input_size} BlazeFace model")
        self.regressors_index, self.logits_index = outputs[0]["index"], outputs[1]["index"]

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        square, box = letterbox(image, self.input_size)
        # BlazeFace takes RGB scaled to -1..1.
        tensor = (square.astype(np.float32) - 127.5) / 127.5
        self.interpreter.set_tensor(self.input_index, tensor[None])
        self.interpreter.invoke()
        regressors = self.interpreter.get_tensor(self.regressors_index)[0]
        logits = self.interpreter.get_tensor(self.logits_index)[0, :, 0]
        found = weighted_nms(decode(regressors, logits, self.anchors, self.input_size, self.backend.score_threshold))
        boxes = [to_frame_box(d, box) for d in found]
        return [b for b in boxes if min(b.w, b.h) >= min_size]
