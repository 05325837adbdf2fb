"""The Python API: facial expressions from a photo, an array, a camera, a video or a folder, in a few lines.

    from edge_runtime import EmotionRecognizer

    recognizer = EmotionRecognizer()                   # the int8 Model 3 inside the package, default settings
    for face in recognizer.faces("photo.jpg"):         # or a BGR/grayscale NumPy array
        print(face.box, face.label, face.score, face.probs)
    for face in recognizer.watch("0"):                 # camera 0, a video file, a folder, an rtsp:// URL
        print(face.track, face.label, face.raw_label)  # the steady state per tracked face, and this frame's reading

Records are :class:`~edge_runtime.core.faces.FaceEvent`, the same ones the CLI
writes as JSON lines; settings are the same :class:`~edge_runtime.config.Config`
(``EmotionRecognizer(load_config("fer-edge.toml"))`` or
``EmotionRecognizer(overrides={"model.tta": "none"})``). Nothing here imports
TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge_runtime.config import Config, with_overrides
from edge_runtime.core.errors import FerError
from edge_runtime.core.faces import FaceEvent
from edge_runtime.service import build_runtime, load_models, source_from_config
from edge_runtime.sources import Frame, ImageFileSource, capture_times

_CHANNELS = (1, 3, 4)  # what faces() takes: grayscale, BGR, BGRA


class EmotionRecognizer:
    """A face detector and the emotion model, loaded once, for photos (:meth:`faces`) and streams (:meth:`watch`)."""

    def __init__(self, config: Config | None = None, *, overrides: dict[str, Any] | None = None):
        """Load the detector and the model ``config`` names (default: the packaged model, default settings).

        ``overrides`` are ``{"section.key": value}`` settings on top of it, validated like a config file. A
        missing or damaged model raises :class:`~edge_runtime.core.errors.FerError` saying what to fix.
        """
        self.config = with_overrides(config or Config(), overrides or {})
        self.detector, self.classifier = load_models(self.config)
        self.labels = self.classifier.labels

    def faces(self, image: np.ndarray | str | Path) -> list[FaceEvent]:
        """Every face in one photo, largest first: box, label, score and the probability of every label.

        ``image`` is a path, or a ``uint8`` array as OpenCV holds images: BGR (``H x W x 3``), BGRA or grayscale.
        A photo stands alone: nothing carries over from an earlier call.
        """
        frame = self._frame(image)
        runtime = build_runtime(self.config, source=_NoSource(), models=(self.detector, self.classifier))
        _, events = runtime.process(frame)
        return events

    def watch(self, source: str | int | None = None) -> Iterator[FaceEvent]:
        """The faces of every processed frame of ``source`` (default: ``source.spec``), as they come.

        Each record carries its face's track id and the steady state (``label``, after the time-based smoothing
        the service uses), with this frame's own reading beside it (``raw_label``). A camera goes on until you stop
        iterating (``break``); a file or folder ends by itself.
        """
        spec = None if source is None else str(source)
        runtime = build_runtime(self.config, source=source_from_config(self.config, spec),
                                models=(self.detector, self.classifier))
        for _, events in runtime.processed():
            yield from events

    def _frame(self, image: np.ndarray | str | Path) -> Frame:
        if isinstance(image, (str, Path)):
            source = ImageFileSource(image, self.config.source.max_pixels)
            frame = next(source.frames(), None)
            if frame is None:
                raise FerError(f"{image}: {source.refusal}")
            return frame
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise FerError(f"faces() takes a path or a uint8 image array, not {kind}; convert with "
                           "np.clip(image, 0, 255).astype(np.uint8)")
        channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
        if channels not in _CHANNELS or min(image.shape[:2]) < 1:
            raise FerError(f"faces() takes an H x W (gray), H x W x 3 (BGR) or H x W x 4 (BGRA) image, not shape "
                           f"{image.shape}")
        limit = self.config.source.max_pixels
        if limit and image.shape[0] * image.shape[1] > limit:
            raise FerError(f"a {image.shape[1]}x{image.shape[0]} image is more than source.max_pixels ({limit})")
        if channels == 1:
            image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
        elif channels == 4:
            image = np.ascontiguousarray(image[:, :, :3])
        return Frame(image, "array", 0, *capture_times(), still=True)


class _NoSource:
    """The source of a runtime that is only handed frames (:meth:`EmotionRecognizer.faces`)."""

    name = "array"

    def frames(self):
        return iter(())

    def health(self):
        from edge_runtime.sources import SourceHealth

        return SourceHealth(True, 0, 0)

    def close(self) -> None:
        pass
