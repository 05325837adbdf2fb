"""Hostile input, each with its expected outcome: one line and exit 2, or skipped and counted while the run goes on.

Every file here is made on the fly from small real data (the shipped model, justin.jpg, test.mp4). The other
findings of the hostile-input review have their suites next to the code they test: a poisoned spool
(test_spool.py, test_service.py), the HTTP endpoint (test_http_limits.py), MQTT TLS, logins and sender crashes
(test_mqtt_hardening.py), secrets and permissions (test_bad_input.py).
"""

import json
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from edge_runtime.core.contract import load_contract, write_contract
from edge_runtime.sources import MAX_UNREADABLE_FRAMES_IN_A_ROW, open_source
from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, png_bomb, require, run_main


def _bmp_bomb() -> bytes:
    """A BMP whose header claims 30000x30000 pixels (2.7 GB decoded) in a few dozen bytes."""
    data = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[18:26] = struct.pack("<ii", 30_000, 30_000)
    return bytes(data)


def _jpeg_bomb() -> bytes:
    """A real JPEG whose start-of-frame header is rewritten to claim 60000x60000 pixels."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", 60_000, 60_000)
    return bytes(data)


def _png_with_a_bad_checksum() -> bytes:
    data = bytearray(cv2.imencode(".png", np.full((16, 16), 128, np.uint8))[1].tobytes())
    data[29:33] = struct.pack(">I", zlib.crc32(b"other") & 0xFFFFFFFF)
    return bytes(data)


HOSTILE_IMAGES = {
    "png_over_opencvs_limit.png": lambda: png_bomb(40_000),
    "png_over_max_pixels.png": lambda: png_bomb(20_000),
    "bmp_bomb.bmp": _bmp_bomb,
    "jpeg_bomb.jpg": _jpeg_bomb,
    "png_bad_checksum.png": _png_with_a_bad_checksum,
    "half_a_png.png": lambda: cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes()[:60],
    "empty.png": lambda: b"",
    "text.jpg": lambda: b"this is not an image\n",
    "random.jpg": lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_IMAGES))
def test_a_hostile_image_alone_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, name):
    model = require(SHIPPED_INT8, "shipped int8 model")
    hostile = tmp_path / name
    hostile.write_bytes(HOSTILE_IMAGES[name]())
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(hostile))
    assert code == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ") and name in stderr.strip().splitlines()[-1]


def test_hostile_images_in_a_folder_are_skipped_and_counted_and_the_good_one_is_read(monkeypatch, capsys, tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name, make in HOSTILE_IMAGES.items():
        (folder / name).write_bytes(make())
    shutil.copy(require(MEDIA / "justin.jpg", "justin.jpg"), folder / "zz_justin.jpg")  # read last
    code, stdout, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(folder),
                                    "--max-frames", "0")
    events = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and "Traceback" not in stderr
    assert events and {event["source"] for event in events} == {str(folder / "zz_justin.jpg")}
    source = open_source(str(folder))
    assert len(list(source.frames())) == 1 and source.health().skipped == len(HOSTILE_IMAGES)


@pytest.mark.parametrize("damage, expected", [
    ("another_models_weights", "does not match its sidecar"),
    ("200_flipped_bytes", "does not match its sidecar"),
    ("truncated", "does not match its sidecar"),
    ("sidecar_without_hash", "sidecar says nothing"),
    ("sidecar_not_json", "unreadable model metadata"),
    ("sidecar_of_another_format", "metadata format 'fer-edge-model/2'"),
    ("sidecar_cpu_model_escapes", "must name a .tflite file next to the model"),
])
def test_a_tampered_model_or_sidecar_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, damage, expected):
    shipped = require(SHIPPED_INT8, "shipped int8 model")
    model, sidecar = tmp_path / "model.tflite", tmp_path / "model.json"
    shutil.copy(shipped, model)
    shutil.copy(shipped.with_suffix(".json"), sidecar)
    raw = json.loads(sidecar.read_text())
    data = bytearray(model.read_bytes())
    if damage == "another_models_weights":
        shutil.copy(ROOT / "models" / "fer_cnn_int8.tflite", model)  # Model 1's weights under Model 3's sidecar
    elif damage == "200_flipped_bytes":
        for offset in range(len(data) // 2, len(data) // 2 + 200):
            data[offset] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "truncated":
        model.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "sidecar_not_json":
        sidecar.write_text("{ not json")
    else:
        edits = {"sidecar_without_hash": {"model_sha256": ""},
                 "sidecar_of_another_format": {"format": "fer-edge-model/2"},
                 "sidecar_cpu_model_escapes": {"edgetpu_compiled": True, "cpu_model": "../../etc/passwd"}}[damage]
        sidecar.write_text(json.dumps({**raw, **edits}))
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source",
                               str(require(MEDIA / "justin.jpg", "justin.jpg")))
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in stderr and expected in last
    assert "verified on" not in stderr  # no "verified" line for a model that did not load and match


def test_a_model_reconverted_in_place_is_bound_to_its_new_bytes(tmp_path):
    shipped = require(SHIPPED_INT8, "shipped int8 model")
    model = tmp_path / "model.tflite"
    shutil.copy(shipped, model)
    contract = load_contract(shipped)
    write_contract(model, contract)  # what fer-convert does: the sidecar follows the file written
    assert load_contract(model).model_sha256 == contract.model_sha256


def _damaged_video(tmp_path, length: int):
    """test.mp4 with ``length`` bytes zeroed in the middle: a stretch of frames the decoder cannot read."""
    data = bytearray(require(MEDIA / "test.mp4", "test.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + length] = bytes(length)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged


def test_a_video_is_read_past_a_damaged_stretch_and_says_how_many_frames_it_skipped(tmp_path, caplog):
    caplog.set_level("INFO", logger="edge_runtime.sources")  # the end-of-video line is INFO
    source = open_source(str(_damaged_video(tmp_path, 100_000)))
    frames = list(source.frames())
    whole = sum(1 for _ in open_source(str(require(MEDIA / "test.mp4", "test.mp4"))).frames())
    skipped = source.health().skipped
    assert skipped > 0 and len(frames) + skipped == whole  # every frame either read or counted
    assert f"end of video after {len(frames)} frames; {skipped} unreadable frames skipped" in caplog.text
    assert [frame.index for frame in frames] == list(range(len(frames)))


def test_a_video_whose_second_half_is_gone_ends_at_its_frame_count(tmp_path, caplog):
    caplog.set_level("INFO", logger="edge_runtime.sources")  # the end-of-video line is INFO
    data = bytearray(require(MEDIA / "test.mp4", "test.mp4").read_bytes())
    moov = data.rindex(b"moov") - 4  # the index at the end stays: the container still knows its 115 frames
    data[len(data) // 2:moov] = bytes(moov - len(data) // 2)
    ruined = tmp_path / "ruined.mp4"
    ruined.write_bytes(bytes(data))
    source = open_source(str(ruined))
    frames = list(source.frames())
    assert 0 < len(frames) < 115 and len(frames) + source.health().skipped == 115
    assert source.health().skipped < MAX_UNREADABLE_FRAMES_IN_A_ROW
    skipped = source.health().skipped
    assert f"end of video after {len(frames)} frames; {skipped} unreadable frames skipped" in caplog.text
