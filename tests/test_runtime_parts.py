"""Runtime parts on synthetic inputs: abstention, crops, camera retry, model contract, Edge TPU errors."""

import inspect
import json
import logging
import re
import shutil
import signal
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_runtime.classifier import dequantize, quantize_input
from edge_runtime.config import Config, with_overrides
from edge_runtime.core.contract import (
    Budget,
    FloatReference,
    ModelContract,
    TensorSpec,
    Verification,
    budget_state,
    load_contract,
    verification_summary,
)
from edge_runtime.core.errors import FerError, ModelError
from edge_runtime.core.interpreter import EdgeTpuError, InterpreterApi, make_interpreter
from edge_runtime.core.labels import LABELS
from edge_runtime.detectors import Box, DetectorOptions, crop_face, find_faces
from edge_runtime.service import source_from_config
from edge_runtime.smoothing import UNCERTAIN, decide
from edge_runtime.sources import CameraSource, SourceHealth, open_source
from tests.conftest import MEDIA, SHIPPED_INT8, require


def one_hot_ish(index, peak=0.7):
    probabilities = np.full(7, (1 - peak) / 6, np.float32)
    probabilities[index] = peak
    return probabilities


def test_abstention_below_threshold():
    assert decide(np.full(7, 1 / 7), LABELS, 0.4) == (UNCERTAIN, pytest.approx(1 / 7))
    assert decide(one_hot_ish(5, 0.5), LABELS, 0.4)[0] == "surprise"


def test_crops_at_the_border_are_clipped_never_empty():
    frame = np.zeros((100, 200, 3), np.uint8)
    assert crop_face(frame, Box(-20, -20, 50, 50), 0.2).shape == (40, 40, 3)
    assert crop_face(frame, Box(180, 80, 40, 40), 0.1).shape == (24, 24, 3)  # grown by 4 px, clipped at 200x100
    assert crop_face(frame, Box(300, 300, 40, 40), 0.1) is None


def test_duplicate_detections_of_one_face_are_merged():
    class DoubleDetector:
        options = DetectorOptions(min_face=10, detect_width=0)

        def detect(self, image, min_size):
            return [Box(266, 17, 127, 127), Box(293, 20, 151, 151), Box(0, 0, 60, 60)]

    assert find_faces(DoubleDetector(), np.zeros((400, 600), np.uint8)) == [Box(293, 20, 151, 151), Box(0, 0, 60, 60)]


def test_tiny_faces_are_ignored():
    class FixedDetector:
        options = DetectorOptions(min_face=40, detect_width=0)

        def detect(self, image, min_size):
            return [Box(0, 0, 20, 20), Box(50, 50, 60, 60), Box(10, 10, 45, 45)]

    # The 45px box overlaps the 60px one by less than half of its area: a second face, kept.
    assert find_faces(FixedDetector(), np.zeros((200, 200), np.uint8)) == [Box(50, 50, 60, 60), Box(10, 10, 45, 45)]
    FixedDetector.options = DetectorOptions(min_face=40, max_faces=1, detect_width=0)
    assert find_faces(FixedDetector(), np.zeros((200, 200), np.uint8)) == [Box(50, 50, 60, 60)]


class FakeCapture:
    """A camera at the hardware boundary: delivers `frames` frames (black, or from ``images``), then fails
    (unplugged)."""

    def __init__(self, frames, images=None):
        self.left, self.images, self.delivered = frames, images, 0

    def isOpened(self):
        return True

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.delivered += 1
        if self.images:
            return True, self.images[(self.delivered - 1) % len(self.images)]
        return True, np.zeros((48, 64, 3), np.uint8)

    def set(self, *args):
        return True

    def release(self):
        pass


def test_camera_that_disappears_is_retried_with_backoff():
    # Hardware boundary mocked: open #1 gives 3 frames then dies, opens #2 and #3 fail, #4 gives 2 frames.
    opens = iter([FakeCapture(3), None, None, FakeCapture(2)])
    sleeps = []
    camera = CameraSource(0, opener=lambda spec: next(opens, None), sleep=sleeps.append, max_retries=3,
                          newest_only=False,
                          initial_backoff_s=0.5)
    frames = (frame for frame in camera.frames() if frame is not None)  # None: an idle tick while it waits
    assert camera.health() == SourceHealth(connected=False, reconnects=0, skipped=0)
    got = [next(frames).index for _ in range(3)]
    assert camera.health() == SourceHealth(connected=True, reconnects=0, skipped=0)
    got += [next(frames).index for _ in range(2)]
    # The failed read when the first capture died is a lost frame; the reopening a reconnect.
    assert got == [0, 1, 2, 3, 4] and camera.health() == SourceHealth(connected=True, reconnects=1, skipped=1)
    assert sleeps == [0.5, 0.5, 0.5]  # 0.5 s, then 1 s: exponential backoff, waited in idle ticks of 0.5 s
    with pytest.raises(FerError, match="unavailable after 3 retries"):
        for _ in frames:
            pass


def test_the_wait_between_reopenings_is_capped_by_source_max_backoff_s(caplog):
    config = with_overrides(Config(), {"source.spec": "0", "source.max_backoff_s": 2.0})
    assert source_from_config(config).max_backoff_s == 2.0
    # Hardware boundary mocked: a camera that never opens.
    camera = CameraSource(0, opener=lambda spec: None, sleep=lambda seconds: None, max_retries=6, newest_only=False,
                          max_backoff_s=config.source.max_backoff_s)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.sources"), pytest.raises(FerError):
        for _ in camera.frames():
            pass
    waits = [float(re.search(r"retrying in (\S+) s", record.getMessage()).group(1)) for record in caplog.records]
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


class CountingCapture(FakeCapture):
    """A camera at the hardware boundary that records its releases, and any that came during a read."""

    def __init__(self, frames, read_seconds=0.0):
        super().__init__(frames)
        self.read_seconds, self.reading = read_seconds, False
        self.releases = self.releases_during_a_read = 0

    def read(self):
        self.reading = True
        time.sleep(self.read_seconds)
        self.reading = False
        return super().read()

    def release(self):
        self.releases += 1
        self.releases_during_a_read += self.reading


def test_a_camera_read_directly_is_released_by_its_frame_loop_even_when_the_consumer_drops_it_at_a_frame():
    capture = CountingCapture(10)  # hardware boundary mocked
    camera = CameraSource(0, opener=lambda spec: capture, newest_only=False)
    frames = camera.frames()
    next(frames)
    camera.close()  # as SIGTERM's handler or another thread does, while the consumer holds a frame
    assert capture.releases == 0  # close() leaves the device to the loop, which may be reading it
    frames.close()  # the consumer stops iterating at that frame
    assert capture.releases == 1 and camera.capture is None
    other = CountingCapture(10)
    next(CameraSource(0, opener=lambda spec: other, newest_only=False).frames())  # dropped without close()
    assert other.releases == 1  # (CPython finalizes it at once): the device does not stay open


@pytest.mark.parametrize("newest_only", [False, True])
def test_a_camera_closed_from_another_thread_is_never_released_during_a_read(newest_only):
    capture = CountingCapture(1000, read_seconds=0.05)  # hardware boundary mocked: each read takes 50 ms
    camera = CameraSource(0, opener=lambda spec: capture, newest_only=newest_only)
    read = []
    reader = threading.Thread(target=lambda: read.extend(frame.index for frame in camera.frames()))
    reader.start()
    time.sleep(0.12)  # inside the third read
    camera.close()
    reader.join(5.0)
    assert not reader.is_alive()
    assert capture.releases == 1 and capture.releases_during_a_read == 0


class LiveCapture(CountingCapture):
    """A live camera at the hardware boundary: a frame every ``interval`` seconds, its number in its pixels."""

    def __init__(self, frames, interval):
        super().__init__(frames, read_seconds=interval)

    def read(self):
        ok, image = super().read()
        return (ok, np.full((4, 4, 3), self.delivered % 256, np.uint8)) if ok else (ok, image)


def test_a_camera_read_slower_than_it_delivers_hands_out_its_newest_frame():
    assert open_source("0").newest_only and open_source("rtsp://camera.invalid/stream").newest_only
    assert not open_source("/dev/video0", newest_frame=False).newest_only  # source.newest_frame = false
    capture = LiveCapture(10_000, interval=0.01)  # hardware boundary mocked: 100 frames a second
    camera = CameraSource("rtsp://camera.invalid/stream", opener=lambda spec: capture)
    frames = camera.frames()
    taken = []
    for _ in range(5):
        frame = next(frames)
        taken.append((frame.index, int(frame.image[0, 0, 0])))
        time.sleep(0.1)  # a runtime at 10 frames a second
    frames.close()
    assert [index for index, _ in taken] == [0, 1, 2, 3, 4]
    # Read on each request, the numbers would be 1..5; the newest frame has moved on about 10 frames each time.
    assert taken[-1][1] - taken[0][1] >= 20, taken
    assert camera.health().superseded >= 20
    assert capture.releases == 1 and capture.releases_during_a_read == 0  # released by the reader, after its read


def test_a_stream_that_never_opens_raises_in_the_consumer_after_its_retries():
    sleeps = []
    camera = CameraSource("rtsp://camera.invalid/stream", opener=lambda spec: None, sleep=sleeps.append,
                          max_retries=2)
    with pytest.raises(FerError, match="unavailable after 2 retries"):
        list(camera.frames())
    assert sleeps == [0.5, 0.5, 0.5]  # 0.5 s, then 1 s, in idle ticks of 0.5 s


def _frames_until_a_handler_closes(camera: CameraSource, after_s: float = 0.2) -> tuple[list, float]:
    """The frames ``camera`` gives while a SIGALRM handler closes it after ``after_s`` (as SIGTERM's handler does),
    and how long they took."""
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: camera.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, after_s)
        started = time.monotonic()
        frames = [frame for frame in camera.frames() if frame is not None]
        return frames, time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_signal_handler_stops_a_consumer_waiting_for_a_stream_frame():
    capture = LiveCapture(10_000, interval=0.5)  # hardware boundary mocked: a slow stream
    camera = CameraSource("http://camera.invalid/stream.mjpg", opener=lambda spec: capture)
    frames, seconds = _frames_until_a_handler_closes(camera)  # lands while the consumer waits for the first frame
    assert frames == [] and seconds < 2.0
    assert capture.releases == 1 and capture.releases_during_a_read == 0


def test_a_signal_handler_that_closes_a_camera_ends_its_backoff_wait_at_once():
    # Hardware boundary mocked: the camera never opens, so the source sits in a 30 s backoff wait.
    camera = CameraSource(0, opener=lambda spec: None, initial_backoff_s=30.0)
    frames, seconds = _frames_until_a_handler_closes(camera)
    assert frames == [] and seconds < 2.0


def test_a_stop_set_by_a_handler_that_lands_inside_the_wait_neither_blocks_nor_is_slept_through(monkeypatch):
    """A handler runs in the main thread, possibly inside that thread's own wait. threading.Event.set would wait
    there for the lock the interrupted wait holds, forever; Closing.set must return, and the wait wake at once."""
    import select

    from edge_runtime.sources import Closing

    closing = Closing()
    real_poll = select.poll

    class HandlerLandsBeforeTheSleep:
        def __init__(self):
            self.poller = real_poll()

        def register(self, *arguments):
            self.poller.register(*arguments)

        def poll(self, timeout_ms):
            closing.set()  # the handler, between the wait's flag check and its sleep
            return self.poller.poll(timeout_ms)

    monkeypatch.setattr(select, "poll", HandlerLandsBeforeTheSleep)
    started = time.monotonic()
    assert closing.wait(30.0) is True
    assert time.monotonic() - started < 1.0
    assert closing.wait(30.0) is True and closing.is_set()


def test_source_spec_errors(tmp_path):
    with pytest.raises(FerError, match="not found"):
        open_source(str(tmp_path / "missing.jpg"))
    with pytest.raises(FerError, match="python3-picamera2"):
        next(open_source("picamera2").frames())


def test_quantization_helpers_round_trip():
    pixels = np.arange(256, dtype=np.uint8)
    assert quantize_input(pixels, TensorSpec((256,), "uint8", 1.0, 0)) is pixels
    as_int8 = quantize_input(pixels, TensorSpec((256,), "int8", 1.0, -128))
    assert as_int8.dtype == np.int8 and as_int8[0] == -128 and as_int8[-1] == 127
    as_float = dequantize(np.array([0, 128, 255], np.uint8), TensorSpec((3,), "uint8", 1 / 256, 0))
    assert as_float.tolist() == [0, 0.5, 255 / 256]


def test_model_contract_refusals(tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    copy = tmp_path / "m.tflite"
    copy.write_bytes(model.read_bytes())
    with pytest.raises(ModelError, match="no metadata sidecar"):
        load_contract(copy)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    for change, message in ((("input", "shape"), [1, 64, 64, 1]), (("output", "shape"), [1, 8])):
        bad = json.loads(json.dumps(sidecar))
        bad[change[0]][change[1]] = message
        copy.with_suffix(".json").write_text(json.dumps(bad))
        with pytest.raises(ModelError, match="expected"):
            load_contract(copy)
    bad = dict(sidecar, labels=sidecar["labels"][:6])
    copy.with_suffix(".json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="6 labels"):
        load_contract(copy)
    copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable model metadata"):
        load_contract(copy)


def test_start_up_says_how_the_model_was_verified(tmp_path, caplog):
    from dataclasses import replace

    from edge_runtime.classifier import EmotionClassifier

    model = require(SHIPPED_INT8, "shipped int8 model")
    contract = load_contract(model)
    verified = Verification(split="PrivateTest", images=3589, accuracy=0.5, macro_f1=0.48,
                            accuracy_drop_pp_vs_keras=0.1, top1_agreement_vs_keras=0.9365)
    passed = replace(contract, verified=replace(verified, budget=Budget(0.5, 0.98, True)))
    level, line = verification_summary(passed, "m.tflite")
    assert level == logging.INFO and "accuracy 50.0%" in line and "agreement with its Keras model 93.7%" in line
    # A quantization-aware model's file also says how it compares with the float model it came from.
    reference = FloatReference(file="float.keras", accuracy=0.49, top1_agreement=0.944)
    line = verification_summary(replace(passed, verified=replace(passed.verified, float_reference=reference)),
                                "m.tflite")[1]
    assert line.endswith("(94.4% with the float model float.keras, accuracy 49.0%)")
    failing = replace(verified, budget=Budget(0.5, 0.97, False, ("int8 top-1 agreement 93.65% is below 97%",)))
    level, line = verification_summary(replace(contract, verified=failing), "m.tflite")
    assert level == logging.WARNING
    assert line.endswith("FAILED its conversion budget: int8 top-1 agreement 93.65% is below 97%")
    assert verification_summary(replace(contract, verified=None), "m.tflite")[0] == logging.WARNING
    assert [budget_state(replace(contract, verified=v)) for v in (None, verified, failing, passed.verified)] == [
        "unverified", "unjudged", "failed", "passed"]
    # The classifier logs it when it loads a model.
    copy = tmp_path / "m.tflite"
    copy.write_bytes(model.read_bytes())
    sidecar = json.loads(model.with_suffix(".json").read_text())
    copy.with_suffix(".json").write_text(json.dumps({**sidecar, "verified": failing.to_json()}))
    with caplog.at_level(logging.INFO, logger="edge_runtime.classifier"):
        EmotionClassifier.from_file(copy)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("FAILED its conversion budget" in message for message in warnings)


def test_edgetpu_errors_are_distinct(tmp_path, monkeypatch, caplog):
    model = require(SHIPPED_INT8, "shipped int8 model")
    with pytest.raises(EdgeTpuError, match="not compiled for the Edge TPU"):
        make_interpreter(model, backend="edgetpu", fallback_to_cpu=False)
    with caplog.at_level(logging.WARNING):
        fallback = make_interpreter(model, backend="edgetpu", fallback_to_cpu=True)
    assert any("not compiled for the Edge TPU" in r.getMessage() and "falling back to the CPU" in r.getMessage()
               for r in caplog.records)
    # The CPU interpreter it fell back to runs the model: 7 class scores for a face.
    fallback.set_tensor(fallback.get_input_details()[0]["index"], np.zeros((1, 48, 48, 1), np.uint8))
    fallback.invoke()
    assert fallback.get_tensor(fallback.get_output_details()[0]["index"]).shape == (1, 7)
    # A model that claims Edge TPU compilation, and a delegate loader standing in for the USB device (hardware
    # boundary).
    compiled = tmp_path / "m_edgetpu.tflite"
    compiled.write_bytes(model.read_bytes() + b"edgetpu-custom-op")

    def no_device(library):
        raise ValueError("Failed to load delegate from libedgetpu.so.1")

    from edge_runtime.core.interpreter import interpreter_api

    api = InterpreterApi(interpreter_api().interpreter_class, no_device, "test")
    with pytest.raises(EdgeTpuError, match="no Edge TPU runtime: libedgetpu.so.1 not found"):  # this machine
        make_interpreter(compiled, backend="edgetpu", fallback_to_cpu=False, api=api)
    # With the library installed but no device attached, the delegate loader's failure is reported as such.
    monkeypatch.setattr("ctypes.util.find_library", lambda name: "libedgetpu.so.1")
    with pytest.raises(EdgeTpuError, match="no Edge TPU found .Failed to load delegate.* plugdev"):
        make_interpreter(compiled, backend="edgetpu", fallback_to_cpu=False, api=api)


def test_detector_registry_errors(tmp_path):
    from edge_runtime.core.errors import ConfigError
    from edge_runtime.detectors import make_detector
    from edge_runtime.detectors.yunet import YuNetOptions

    with pytest.raises(ConfigError, match="unknown detector 'dlib'; choose one of blazeface, haar, yunet"):
        make_detector("dlib", DetectorOptions())
    with pytest.raises(ConfigError, match="yunet detector needs its ONNX model"):
        make_detector("yunet", DetectorOptions(), YuNetOptions(model_path=str(tmp_path / "missing.onnx")))
    assert make_detector("haar", DetectorOptions()).detect(np.zeros((64, 64), np.uint8), 24) == []


def test_a_corrupt_single_image_yields_no_frame_and_logs_an_error(tmp_path, caplog):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    source = open_source(str(broken))
    with caplog.at_level("WARNING", logger="edge_runtime.sources"):
        assert list(source.frames()) == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", f"{broken}: unreadable or corrupt image, skipped")]


def test_run_options_are_the_config_schema():
    """Each `edge-runtime run` option sets one config key and carries that key's own description and choices."""
    from edge_runtime.cli import RUN_OPTIONS, run_command
    from edge_runtime.config import schema_field

    parameters = inspect.signature(run_command).parameters
    assert set(parameters) == {"config", *RUN_OPTIONS}
    for name, path in RUN_OPTIONS.items():
        option = parameters[name].default
        setting = schema_field(path)  # raises for a key the schema does not have
        assert option.help == f"{setting.doc} (config: {path})"
        assert option.default is None  # unset options leave the config file's value alone


def test_a_bad_run_option_names_its_config_key(tmp_path):
    from tests.conftest import run_cli

    result = run_cli("-m", "edge_runtime.cli", "run", "--threads", "0", "--source", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.threads: 0 is below the minimum 1" in result.stderr
    result = run_cli("-m", "edge_runtime.cli", "run", "--backend", "gpu")
    assert result.returncode == 2
    assert "Invalid value for '--backend'" in result.stderr and "'cpu', 'edgetpu'" in result.stderr


def test_each_detector_backend_has_its_own_typed_section():
    from edge_runtime.config import config_from_dict, describe_schema, schema_field
    from edge_runtime.core.errors import ConfigError
    from edge_runtime.detectors import DETECTORS
    from edge_runtime.detectors.haar import HaarOptions

    assert schema_field("detector.name").choices == tuple(DETECTORS)  # names come from the registry
    config = config_from_dict({"detector": {"name": "haar", "haar": {"scale_factor": 1.3}}})
    assert config.detector.haar == HaarOptions(scale_factor=1.3, min_neighbors=3)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) detector.blazeface.scale_factor; allowed in "
                                          r"detector.blazeface: model_path, score_threshold"):
        config_from_dict({"detector": {"blazeface": {"scale_factor": 1.3}}})
    with pytest.raises(ConfigError, match=r"detector.yunet.score_threshold: 1.5 is above the maximum 1.0"):
        config_from_dict({"detector": {"yunet": {"score_threshold": 1.5}}})
    schema = describe_schema()
    for name in DETECTORS:
        assert f"[detector.{name}]" in schema


STANDIN_DETECTOR = """
from dataclasses import dataclass

from edge_runtime.core.faces import Box
from edge_runtime.core.records import setting


@dataclass(frozen=True)
class CornerOptions:
    side: int = setting(20, "side of the one face it finds", minimum=1)


class CornerDetector:  # a stand-in backend: one face in the top-left corner of every image
    Options = CornerOptions

    def __init__(self, options, backend):
        self.backend = backend

    def detect(self, image, min_size):
        return [Box(0, 0, self.backend.side, self.backend.side)]
"""


def test_a_new_detector_needs_only_its_module_and_its_registry_line(tmp_path):
    """A copy of the runtime gets one new module and one line in DETECTORS (with its import); the config schema,
    the validation, the schema text and the factory then know the new backend."""
    import subprocess

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "edge_runtime", tmp_path / "edge_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "edge_runtime" / "detectors" / "corner.py").write_text(STANDIN_DETECTOR)
    registry = tmp_path / "edge_runtime" / "detectors" / "__init__.py"
    yunet = "from edge_runtime.detectors.yunet import YuNetDetector\n"
    text = registry.read_text().replace(yunet, yunet + "from edge_runtime.detectors.corner import CornerDetector\n")
    registry.write_text(text.replace('    "yunet": YuNetDetector,\n',
                                     '    "yunet": YuNetDetector,\n    "corner": CornerDetector,\n'))
    check = ("import numpy as np\n"
             "from edge_runtime.config import config_from_dict, describe_schema\n"
             "from edge_runtime.detectors import make_detector\n"
             "c = config_from_dict({'detector': {'name': 'corner', 'corner': {'side': 30}}}).detector\n"
             "print('[detector.corner]' in describe_schema())\n"
             "print(make_detector(c.name, c.shared_options(1), c.backend).detect(np.zeros((9, 9), np.uint8), 8))\n"
             "config_from_dict({'detector': {'corner': {'side': 0}}})\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    found = "[Box(x=0, y=0, w=30, h=30, score=1.0, eyes=None)]"
    assert result.stdout.splitlines() == ["True", found], result.stderr[-2000:]
    assert "detector.corner.side: 0 is below the minimum 1" in result.stderr


def test_file_sources_report_their_health(tmp_path):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    shutil.copy(photo, tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(photo.read_bytes()[:200])  # truncated: unreadable
    (tmp_path / "notes.txt").write_text("not an image")
    folder = open_source(str(tmp_path))
    assert len(list(folder.frames())) == 1
    assert folder.health() == SourceHealth(connected=True, reconnects=0, skipped=2)
    broken = open_source(str(tmp_path / "b.jpg"))
    assert list(broken.frames()) == [] and broken.health() == SourceHealth(connected=False, reconnects=0, skipped=1)


def test_sidecar_records_refuse_unknown_missing_and_mistyped_fields(tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    copy = tmp_path / "m.tflite"
    copy.write_bytes(model.read_bytes())
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert ModelContract.from_json(sidecar).to_json() == sidecar  # a round trip changes nothing
    cases = [
        ({**sidecar, "colour": "blue"}, "unknown field(s) colour"),
        ({k: v for k, v in sidecar.items() if k != "labels"}, "missing field(s) labels"),
        ({**sidecar, "input": {**sidecar["input"], "shape": "48x48"}}, "input.shape: expected a list, got str"),
        ({**sidecar, "verified": {"split": "PrivateTest"}}, "verified: missing field(s) images, accuracy"),
        ({**sidecar, "format": "fer-edge-model/1"}, "metadata format 'fer-edge-model/1', this runtime reads"),
    ]
    for bad, message in cases:
        copy.with_suffix(".json").write_text(json.dumps(bad))
        with pytest.raises(ModelError, match=re.escape(message)):
            load_contract(copy)


def test_version_is_printed_and_defined_once():
    from importlib.metadata import version

    from edge_runtime import __version__
    from tests.conftest import run_cli

    result = run_cli("-m", "edge_runtime.cli", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"edge-runtime (fer-edge) {__version__}"
    assert version("fer-edge") == __version__  # pyproject.toml reads it from edge_runtime/core/version.py


@pytest.fixture
def stand_in_picamera2(monkeypatch):
    """The picamera2 stand-in (tests/standin_picamera2.py) in place of the real package: a hardware boundary."""
    from tests import standin_picamera2

    standin_picamera2.Picamera2.cameras_missing_for = 0
    standin_picamera2.Picamera2.fail_after_frames = []
    standin_picamera2.Picamera2.opened = []
    monkeypatch.setitem(sys.modules, "picamera2", standin_picamera2)
    return standin_picamera2.Picamera2


def test_picamera2_frames_are_the_luma_plane_without_stride_padding(stand_in_picamera2):
    from edge_runtime.sources import Picamera2Source

    source = Picamera2Source(0, width=320, height=240)
    frames = source.frames()
    first, second = next(frames), next(frames)
    assert first.image.shape == (240, 320) and first.image.flags["C_CONTIGUOUS"]
    assert first.image.max() < 200  # no chroma rows, no stride padding (both white in the stand-in)
    assert first.image[0, 0] == 0 and second.image[0, 0] == 1 and second.index == 1
    assert source.health() == SourceHealth(connected=True, reconnects=0, skipped=0)
    frames.close()
    (camera,) = stand_in_picamera2.opened
    assert camera.stopped and camera.closed  # released when the frames end


def test_picamera2_missing_at_start_is_retried_with_backoff(stand_in_picamera2, monkeypatch):
    from edge_runtime.sources import Picamera2Source

    stand_in_picamera2.cameras_missing_for = 2
    source = Picamera2Source(0, width=64, height=48, initial_backoff_s=0.01, max_backoff_s=0.04)
    waits = []
    monkeypatch.setattr(source._closing, "wait", lambda seconds: waits.append(seconds))
    frame = next(frame for frame in source.frames() if frame is not None)  # None: an idle tick while it waits
    assert frame.index == 0 and waits == [0.01, 0.02]
    assert source.health() == SourceHealth(connected=True, reconnects=1, skipped=0)


def test_picamera2_frontend_timeout_mid_stream_reopens(stand_in_picamera2):
    from edge_runtime.sources import Picamera2Source

    stand_in_picamera2.fail_after_frames = [3]  # the first camera times out after 3 frames; the reopened one works
    source = Picamera2Source(0, width=64, height=48, initial_backoff_s=0.01)
    frames = source.frames()
    indices = [next(frames).index for _ in range(5)]
    assert indices == [0, 1, 2, 3, 4]
    first, second = stand_in_picamera2.opened
    assert first.stopped and first.closed and not second.closed
    assert source.health() == SourceHealth(connected=True, reconnects=1, skipped=1)
    frames.close()


def test_picamera2_gives_up_after_max_retries_and_stops_on_close(stand_in_picamera2):
    from edge_runtime.sources import Picamera2Source

    stand_in_picamera2.cameras_missing_for = 10
    source = Picamera2Source(0, max_retries=2, initial_backoff_s=0.01)
    with pytest.raises(FerError, match="picamera2:0 unavailable after 2 retries"):
        list(source.frames())
    # close() cuts a long backoff short: the frames end at once instead of after 30 s.
    stand_in_picamera2.cameras_missing_for = 10
    waiting = Picamera2Source(0, initial_backoff_s=30.0)
    threading.Timer(0.2, waiting.close).start()
    started = time.monotonic()
    assert [frame for frame in waiting.frames() if frame is not None] == []
    assert time.monotonic() - started < 5


def test_flip_tta_averages_the_face_and_its_mirror():
    from edge_runtime.classifier import EmotionClassifier
    from edge_runtime.config import Config

    model = require(SHIPPED_INT8, "shipped int8 model")
    plain = EmotionClassifier.from_file(model)
    flip = EmotionClassifier.from_file(model, tta="flip")
    face = cv2.resize(cv2.imread(str(require(MEDIA / "justin.jpg", "justin.jpg")), cv2.IMREAD_GRAYSCALE), (48, 48))
    expected = (plain.probabilities(face) + plain.probabilities(np.ascontiguousarray(face[:, ::-1]))) / 2
    np.testing.assert_allclose(flip.probabilities(face), expected, atol=1e-6)
    assert not np.allclose(plain.probabilities(face), expected)  # the mirror really changes the answer
    assert Config().model.tta == "flip"  # the default: +1.67 pp PrivateTest accuracy for one more invoke per face
    with pytest.raises(ModelError, match="choose one of none, flip"):
        EmotionClassifier.from_file(model, tta="rotate")
