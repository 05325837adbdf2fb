"""A STAND-IN for the `picamera2` package (a hardware boundary), for tests only.

It follows picamera2's documented behaviour as far as the runtime uses it: ``Picamera2(camera_num)`` (an IndexError
when no camera is attached, as picamera2 raises), ``create_video_configuration(main=..., lores=...)``,
``configure``, ``start``, ``capture_array("lores")`` returning a YUV420 frame as a ``(height * 3 / 2, stride)``
uint8 array whose rows are padded past the width to the stride, and ``stop``/``close``. Faults are scripted on the
class: how many opens find no camera, and after how many frames a capture raises the RuntimeError picamera2 raises
when the camera frontend times out.
"""

import numpy as np


class Picamera2:
    cameras_missing_for = 0  # the next N constructions raise IndexError (no camera attached)
    fail_after_frames: list[int] = []  # per successful open: capture_array raises after that many frames
    opened: list["Picamera2"] = []
    STRIDE_PADDING = 64

    def __init__(self, camera_num: int = 0):
        cls = type(self)
        if cls.cameras_missing_for > 0:
            cls.cameras_missing_for -= 1
            raise IndexError("list index out of range")  # what picamera2 raises with no camera attached
        self.camera_num = camera_num
        self.size = None
        self.started = self.stopped = self.closed = False
        self.frames = 0
        self.fail_after = cls.fail_after_frames.pop(0) if cls.fail_after_frames else None
        cls.opened.append(self)

    def create_video_configuration(self, main=None, lores=None, **_):
        return {"main": main, "lores": lores}

    def configure(self, config):
        self.size = config["lores"]["size"]

    def start(self):
        self.started = True

    def capture_array(self, name="main"):
        assert name == "lores" and self.started and not self.stopped
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        width, height = self.size
        stride = width + self.STRIDE_PADDING
        frame = np.full((height * 3 // 2, stride), 255, np.uint8)  # padding and chroma: white
        frame[:height, :width] = (np.arange(width) + self.frames) % 200  # luma: a gradient that moves per frame
        self.frames += 1
        return frame

    def stop(self):
        self.stopped = True

    def close(self):
        self.closed = True
