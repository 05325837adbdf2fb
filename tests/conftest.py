"""Shared fixtures. Real data comes from ../shared/data (or $FER_SHARED_DATA); tests needing it skip without it."""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The console scripts (edge-runtime, fer-train) of the Python running the tests come first on PATH, so a test that
# runs them gets this environment's, also when the venv is not activated (.venv/bin/python -m pytest).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FER_SHARED_DATA", ROOT.parent / "shared" / "data"))
FER_ARCHIVE = SHARED_DATA / "fer2013" / "fer2013-images.tar.gz"  # sharp in every split
# The copy that circulates in many mirrors: its Training split is Gaussian-blurred. Real bad data for the data checks.
FER_BLURRED_ARCHIVE = SHARED_DATA / "fer2013" / "fer2013-images-blurred-train.tar.gz"
FER_HEAD_CSV = SHARED_DATA / "fer2013" / "fer2013-head.csv"
MEDIA = SHARED_DATA / "media"
SHIPPED_KERAS = ROOT / "models" / "fer_cnn_lstm.keras"  # the Keras model the shipped int8 file is made from
SHIPPED_INT8 = ROOT / "models" / "fer_cnn_lstm_int8.tflite"


@pytest.fixture(autouse=True)
def _no_stale_log_handlers():
    """A CLI run in-process (``run_main``) sets the root logger up (``setup_logging``): a handler writing to this
    test's captured stderr, closed once the test ends, and level INFO. Both are taken back after each test, so later
    tests neither log into a closed stream ("--- Logging error ---") nor see INFO records they did not ask for."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and type(handler) is logging.StreamHandler:  # basicConfig's, not pytest's own
            root.removeHandler(handler)
    root.setLevel(level)


@functools.cache
def plain_photo() -> Path:
    """A small valid JPEG made here (a grey ramp: no face, no shared data), one per test session: the source of a
    config that a test expects to be refused, or accepted, for another reason."""
    import cv2
    import numpy as np

    folder = tempfile.mkdtemp(prefix="fer-edge-test-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # not left behind in /tmp by every session
    path = Path(folder) / "plain.jpg"
    cv2.imwrite(str(path), np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)))
    return path


def require(path: Path, what: str) -> Path:
    """Skip the test, naming the missing file, when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set FER_SHARED_DATA or provide ../shared/data)")
    return path


# Unpacked archives are kept here between test sessions (the tests only read them). In each session's tmp_path they
# would cost the quick loop 10-20 s a run: pytest keeps three sessions' folders and, as a new session starts, deletes
# the oldest one's 72k files, by then cold on disk.
UNPACKED_CACHE = Path(tempfile.gettempdir()) / "fer-edge-test-data"


def _extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target``: by GNU tar where installed (about 1-3 s for FER2013's 35,887 files, against
    about 13 s for Python's tarfile), which strips a leading "/" or "../" from member names so that none lands outside
    the folder; by tarfile with its "data" filter otherwise."""
    if shutil.which("tar"):
        subprocess.run(["tar", "--no-same-owner", "--no-same-permissions", "-xzf", str(archive), "-C", str(target)],
                       check=True, capture_output=True, timeout=300)
        return
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")


def _unpack(archive: Path, what: str) -> Path:
    """``archive`` unpacked once per version of the archive (its name, size and modification time) and reused by
    later sessions. It is unpacked into a staging folder and renamed into place, so a folder that exists is complete,
    and two sessions unpacking at once both end with one complete copy."""
    require(archive, what)
    stat = archive.stat()
    target = UNPACKED_CACHE / f"{archive.name}-{stat.st_size}-{stat.st_mtime_ns}"
    if target.is_dir():
        return target
    UNPACKED_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=UNPACKED_CACHE))
    try:
        _extract(archive, staging)
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # not another session's copy that won the rename: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    abandoned = time.time() - 3600  # the staging folder of a session killed while unpacking
    for stale in [*UNPACKED_CACHE.glob(f"{archive.name}-*"), *UNPACKED_CACHE.glob(".unpacking-*")]:
        if stale != target and (stale.name.startswith(archive.name) or stale.stat().st_mtime < abandoned):
            shutil.rmtree(stale, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def fer_root() -> Path:
    """The real FER2013 image-folder release (sharp), unpacked (once, see ``_unpack``); tests only read it."""
    return _unpack(FER_ARCHIVE, "FER2013 image archive")


@pytest.fixture(scope="session")
def fer_blurred_root() -> Path:
    """The circulating FER2013 copy whose Training split is blurred, unpacked (once, see ``_unpack``); tests only
    read it."""
    return _unpack(FER_BLURRED_ARCHIVE, "FER2013 archive with the blurred Training split")


@pytest.fixture(scope="session")
def fer_small(fer_root):
    """A stratified real subset: 420 Training, 140 PublicTest, 210 PrivateTest images."""
    from lab.data import FerDataset, load_fer2013, stratified_subset

    full = load_fer2013(fer_root)
    sizes = {"Training": 420, "PublicTest": 140, "PrivateTest": 210}
    subsets = {name: stratified_subset(full.splits[name], size, 0) for name, size in sizes.items()}
    return FerDataset(full.source, subsets)


@pytest.fixture(scope="session")
def fer_full(fer_root):
    """The whole real dataset (35,887 images, loads in a few seconds)."""
    from lab.data import load_fer2013

    return load_fer2013(fer_root)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a console script's module in a subprocess, the way a user would."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=ROOT)


def png_bomb(side: int = 40_000) -> bytes:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (made on the fly: a decompression-bomb header)."""
    import struct
    import zlib

    import cv2
    import numpy as np

    png = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    header = b"IHDR" + struct.pack(">II", side, side) + bytes(png[24:29])
    png[12:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(png)


def free_port() -> int:
    """A TCP port nobody listens on now (on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_main(monkeypatch, capsys, *arguments: str, program: str = "edge-runtime", main=None) -> tuple[int, str, str]:
    """``PROGRAM ARGUMENTS`` through a console script's ``main`` in this process (default: edge-runtime's): the exit
    code (0 when it returns without exiting), stdout and stderr."""
    if main is None:
        from edge_runtime.cli import main
    monkeypatch.setattr(sys, "argv", [program, *arguments])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def wait_for(predicate, timeout: float = 20.0) -> bool:
    """Poll ``predicate`` every 0.1 s until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class Mosquitto:
    """A real mosquitto broker on loopback, started from a config this test writes (stop and start at will)."""

    def __init__(self, tmp_path: Path, settings: str = "allow_anonymous true\n"):
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            pytest.skip("mosquitto is not installed (CI installs it: apt-get install mosquitto)")
        self.binary, self.port, self.process = binary, free_port(), None
        self.conf = tmp_path / f"mosquitto-{self.port}.conf"
        # "user root": started as root, mosquitto would otherwise switch to its own user, which cannot read tmp_path.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nuser root\n{settings}")

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto broker on loopback with persistence (so a restart keeps the subscriber's session)."""
    broker = Mosquitto(tmp_path, f"allow_anonymous true\npersistence true\npersistence_location {tmp_path}/\n"
                                 "autosave_interval 1\n").start()
    yield broker
    if broker.process.poll() is None:
        broker.stop()


def face_event(frame: int, source: str = "test.mp4"):
    """A real event record (the sinks' input), numbered by frame so that delivery can be counted."""
    from edge_runtime.core.faces import FaceEvent

    return FaceEvent(source=source, frame=frame, ts=1795318123.925, face=0, track=0, box=(10, 20, 48, 48),
                     label="happy", raw_label="happy", score=0.9, raw_score=0.8, probs={"happy": 0.9, "sad": 0.1})


def subscriber(port, received, subscribed=None, tls=None):
    """A paho client on loopback that collects every event on ``fer/test`` into ``received`` (QoS 1)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("fer/test", qos=1)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set() if subscribed is not None else None
    client.on_message = lambda c, u, message: received.append(json.loads(message.payload))
    if tls is not None:
        client.tls_set_context(tls)
    client.reconnect_delay_set(1, 2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client




def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA, a broker certificate for 127.0.0.1 and localhost, and a client certificate, all signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (CI installs it: apt-get install openssl)")
    where = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fer-edge test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=where)
    extensions = (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth"))
    for name, extension in extensions:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=fer-edge test {name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=where)
        (where / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=where)
        os.chmod(where / f"{name}.key", 0o600)
    # A second CA that signed nothing here: trusting it must not let the broker's certificate pass.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=another CA",
             "-keyout", "other.key", "-out", "other.crt", cwd=where)
    return where
