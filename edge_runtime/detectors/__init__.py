"""Face detectors behind one interface, one file per backend, chosen by name from an explicit registry.

``blazeface`` (default): MediaPipe's BlazeFace on LiteRT, bundled in this package; about 9x faster than the
Haar cascade at the same detection rate (benchmarks/detectors.py).
``haar``: OpenCV's cascade, no model file at all (opencv-python-headless < 5 ships it).
``yunet``: ``cv2.FaceDetectorYN`` with a user-downloaded ONNX model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

from edge_runtime.core.errors import ConfigError
from edge_runtime.core.faces import Box, Eyes
from edge_runtime.core.records import setting
from edge_runtime.detectors.base import CropOptions, DetectorOptions, FaceDetector, crop_face, face_crop, find_faces
from edge_runtime.detectors.blazeface import BlazeFaceDetector
from edge_runtime.detectors.haar import HaarDetector
from edge_runtime.detectors.yunet import YuNetDetector

# Name -> backend class. Each class has a typed ``Options`` dataclass: its section of the config schema
# ([detector.<name>]), so the names and the per-backend settings are declared once, here.
DETECTORS = {
    "blazeface": BlazeFaceDetector,
    "haar": HaarDetector,
    "yunet": YuNetDetector,
}

__all__ = ["Box", "CropOptions", "DETECTORS", "DetectorConfig", "DetectorOptions", "DetectorSettings", "Eyes",
           "FaceDetector", "crop_face", "face_crop", "find_faces", "make_detector"]


def make_detector(name: str, options: DetectorOptions, backend=None) -> FaceDetector:
    """Build detector ``name`` with the shared ``options`` and its own typed ``backend`` options (default: defaults)."""
    try:
        detector_class = DETECTORS[name]
    except KeyError as error:
        raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}") from error
    backend = detector_class.Options() if backend is None else backend
    if not isinstance(backend, detector_class.Options):
        raise ConfigError(f"detector {name!r} takes {detector_class.Options.__name__}, got {type(backend).__name__}")
    return detector_class(options, backend)


@dataclass(frozen=True)
class DetectorSettings:
    """The ``[detector]`` settings every backend shares: which detector, the detection options and the crop."""

    name: str = setting("blazeface", "face detector: blazeface (bundled MediaPipe model on LiteRT), "
                        "haar (OpenCV cascade) or yunet (needs detector.yunet.model_path)", choices=tuple(DETECTORS))
    # The detector's shared options keep their defaults in DetectorOptions (edge_runtime.detectors), defined once.
    min_face: int = setting(DetectorOptions.min_face, "smallest face side in pixels", minimum=8)
    max_faces: int = setting(DetectorOptions.max_faces, "0 = all faces, 1 = largest only, N = the N largest", minimum=0)
    every_n: int = setting(2, "detect on every Nth frame of a video and reuse the boxes in between", minimum=1)
    detect_width: int = setting(DetectorOptions.detect_width, "downscale wider frames to this width for detection "
                                "only (0 = full size); the crop still comes from the full frame", minimum=0)
    align: bool = setting(CropOptions.align, "level each face (undo its roll) by its eye keypoints before "
                          "classifying (detectors that find eyes: blazeface, yunet)")
    margin: float = setting(CropOptions.margin, "grow the face box by this fraction of its side on every side "
                            "before cropping (0: the box frames a face as FER2013 does; "
                            "benchmarks/pipeline_accuracy.py)", minimum=0.0, maximum=1.0)
    restore_blur: bool = setting(CropOptions.restore_blur, "sharpen each face crop by as much as its measured blur "
                                 "calls for (a sharp face is left as it is; benchmarks/blur_restoration.py)")

    @property
    def backend(self):
        """The chosen detector's own options (its ``[detector.<name>]`` section)."""
        return getattr(self, self.name)

    def shared_options(self, threads: int) -> DetectorOptions:
        """The options every backend takes, with the classifier's thread count."""
        return DetectorOptions(min_face=self.min_face, max_faces=self.max_faces, detect_width=self.detect_width,
                               threads=threads)


# The [detector] section: the shared settings plus one section per registered backend, named as in DETECTORS and
# typed by the backend's Options (Frigate-style; only the chosen one is used). Built from the registry so that a new
# backend needs only its module and its registry line.
DetectorConfig = make_dataclass(
    "DetectorConfig",
    [(name, backend.Options, field(default_factory=backend.Options)) for name, backend in DETECTORS.items()],
    bases=(DetectorSettings,), frozen=True,
    namespace={"__module__": __name__, "__doc__": "The ``[detector]`` section: the shared settings "
               "(DetectorSettings) and each backend's own section, one per entry of DETECTORS."})
