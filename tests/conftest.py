"""Shared fixtures. Real data comes from ../shared/data (or $FER_SHARED_DATA); tests needing it skip without it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FER_SHARED_DATA", ROOT.parent / "shared" / "data"))
FER_ARCHIVE = SHARED_DATA / "fer2013" / "fer2013-images.tar.gz"  # sharp in every split
# The copy that circulates in many mirrors: its Training split is Gaussian-blurred. Real bad data for the data checks.
FER_BLURRED_ARCHIVE = SHARED_DATA / "fer2013" / "fer2013-images-blurred-train.tar.gz"
FER_HEAD_CSV = SHARED_DATA / "fer2013" / "fer2013-head.csv"
MEDIA = SHARED_DATA / "media"
SHIPPED_KERAS = ROOT / "models" / "fer_cnn_lstm.keras"  # the Keras model the shipped int8 file is made from
SHIPPED_INT8 = ROOT / "models" / "fer_cnn_lstm_int8.tflite"


def require(path: Path, what: str) -> Path:
    """Skip the test, naming the missing file, when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set FER_SHARED_DATA or provide ../shared/data)")
    return path


def _unpack(archive: Path, what: str, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("fer2013")
    with tarfile.open(require(archive, what)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def fer_root(tmp_path_factory) -> Path:
    """The real FER2013 image-folder release (sharp), unpacked once per test session (about 2 s)."""
    return _unpack(FER_ARCHIVE, "FER2013 image archive", tmp_path_factory)


@pytest.fixture(scope="session")
def fer_blurred_root(tmp_path_factory) -> Path:
    """The circulating FER2013 copy whose Training split is blurred, unpacked once per test session."""
    return _unpack(FER_BLURRED_ARCHIVE, "FER2013 archive with the blurred Training split", tmp_path_factory)


@pytest.fixture(scope="session")
def fer_small(fer_root):
    """A stratified real subset: 420 Training, 140 PublicTest, 210 PrivateTest images."""
    from train.data import FerDataset, load_fer2013, stratified_subset

    full = load_fer2013(fer_root)
    sizes = {"Training": 420, "PublicTest": 140, "PrivateTest": 210}
    return FerDataset(full.source, {name: stratified_subset(full.splits[name], size, 0) for name, size in sizes.items()})


@pytest.fixture(scope="session")
def fer_full(fer_root):
    """The whole real dataset (35,887 images, loads in a few seconds)."""
    from train.data import load_fer2013

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
