"""OpenCV's frontal-face Haar cascade: no model file at all, the fallback when BlazeFace is not wanted.

opencv-python-headless 4.x ships ``CascadeClassifier`` and its cascade files;
5.0 dropped both, so the dependency is pinned below 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.core.errors import ConfigError
from edge_runtime.core.faces import Box
from edge_runtime.core.records import setting
from edge_runtime.detectors.base import DetectorOptions


@dataclass(frozen=True)
class HaarOptions:
    """``[detector.haar]``"""

    scale_factor: float = setting(1.1, "image-pyramid step (smaller = slower, finds more sizes)", minimum=1.01,
                                  maximum=2.0)
    min_neighbors: int = setting(3, "neighbours needed to accept a face (higher = fewer false positives)", minimum=0)


class HaarDetector:
    """Frontal-face Haar cascade (fast on a Pi CPU, no extra files)."""

    Options = HaarOptions

    def __init__(self, options: DetectorOptions, backend: HaarOptions = HaarOptions()):
        self.options, self.backend = options, backend
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise ConfigError("this OpenCV build has no CascadeClassifier/haarcascades "
                              "(opencv-python-headless 5.0 dropped them); install `opencv-python-headless<5` "
                              "or use --detector blazeface")
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise ConfigError(f"cannot load the Haar cascade {path}; reinstall opencv-python-headless<5")

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self.cascade.detectMultiScale(gray, scaleFactor=self.backend.scale_factor,
                                              minNeighbors=self.backend.min_neighbors, minSize=(min_size, min_size))
        return [Box(int(x), int(y), int(w), int(h)) for (x, y, w, h) in found]
