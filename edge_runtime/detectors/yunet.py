"""OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``).

More accurate than Haar on tilted and small faces, but it needs its ONNX model
(face_detection_yunet_2023mar.onnx from opencv_zoo, MIT, 232 KB), which no
wheel ships: the user downloads it and sets ``detector.yunet.model_path``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.core.errors import ConfigError
from edge_runtime.core.faces import Box, Eyes
from edge_runtime.core.records import setting
from edge_runtime.detectors.base import DetectorOptions


@dataclass(frozen=True)
class YuNetOptions:
    """``[detector.yunet]``"""

    model_path: str = setting("", "its ONNX file (face_detection_yunet_2023mar.onnx from opencv_zoo; required)")
    score_threshold: float = setting(0.7, "confidence needed to accept a face", minimum=0.0, maximum=1.0)


class YuNetDetector:
    """``cv2.FaceDetectorYN`` with a user-supplied ONNX model."""

    Options = YuNetOptions

    def __init__(self, options: DetectorOptions, backend: YuNetOptions = YuNetOptions()):
        self.options, self.backend = options, backend
        if not backend.model_path or not Path(backend.model_path).is_file():
            raise ConfigError(f"the yunet detector needs its ONNX model: set detector.yunet.model_path (got "
                              f"{backend.model_path!r}); download face_detection_yunet_2023mar.onnx from opencv_zoo")
        self.detector = cv2.FaceDetectorYN.create(backend.model_path, "", (320, 320), backend.score_threshold)
        self.size = (0, 0)

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        height, width = bgr.shape[:2]
        if (width, height) != self.size:
            self.detector.setInputSize((width, height))
            self.size = (width, height)
        _, faces = self.detector.detect(bgr)
        # A row is x, y, w, h, the person's right eye (on the image's left), left eye, nose, two mouth corners, score.
        boxes = [] if faces is None else [Box(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[-1]),
                                              Eyes(*(float(v) for v in f[4:8]))) for f in faces]
        return [b for b in boxes if min(b.w, b.h) >= min_size]
