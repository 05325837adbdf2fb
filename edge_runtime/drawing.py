"""Boxes and labels drawn on a frame: for annotated output files and the live view."""

from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.events import FaceEvent


def draw_events(image: np.ndarray, events: list[FaceEvent]) -> np.ndarray:
    """A BGR copy of ``image`` with each face's box, smoothed label and score drawn on it."""
    image = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for event in events:
        x, y, w, h = event.box
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(image, f"{event.label} {event.score:.2f}", (x, max(12, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
    return image
