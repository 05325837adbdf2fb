"""Boxes and labels drawn on a frame: for annotated output files (:class:`Annotator`) and the live view."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.core.faces import FaceEvent


def draw_events(image: np.ndarray, events: list[FaceEvent]) -> np.ndarray:
    """A BGR copy of ``image`` with each face's box, smoothed label and score drawn on it."""
    image = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for event in events:
        x, y, w, h = event.box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(image, f"{event.label} {event.score:.2f}", (x, max(12, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
    return image


class Annotator:
    """Draws boxes and labels and writes them to a video (moving sources) or image files (stills).

    Only created when the user asks for it: by default no frame or crop is ever written.
    """

    def __init__(self, target: str):
        self.target = Path(target)
        self.writer = None

    def write(self, image: np.ndarray, events: list[FaceEvent], still: bool, source: str) -> None:
        """Draw ``events`` on ``image``; a still goes to ``<target>/<source stem>_annotated.jpg``, a video frame to
        the video at ``target``."""
        image = draw_events(image, events)
        if still:
            self.target.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(self.target / (Path(source).stem + "_annotated.jpg")), image)
            return
        if self.writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            height, width = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.target), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
        self.writer.write(image)

    def close(self) -> None:
        """Finish the video file, if one was started."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
