"""Bad input never shows a traceback: every runtime CLI option and config key, given a bad value, is refused in one
line that names the option or key and the value, with exit code 2; check-config refuses what run refuses."""


import cv2
import numpy as np
import pytest

from edge_runtime.cli import RUN_OPTIONS
from edge_runtime.config import Config, config_from_dict, preflight, schema_field
from edge_runtime.core.contract import load_contract, write_contract
from edge_runtime.core.errors import ConfigError
from edge_runtime.sources import HEADER_BYTES, header_size, open_source
from tests.conftest import MEDIA, SHIPPED_INT8, plain_photo, png_bomb, require, run_main


def bad_cli_value(name: str) -> str:
    """A value of the right shape for the shell but wrong for the option's config key."""
    setting = schema_field(RUN_OPTIONS[name])
    if setting.choices:
        return "bogus"
    if setting.type in (int, float):
        return "-5"  # below every minimum (threads, every-n, ...) or not a number at all for a choice
    return {"model": "/nonexistent/model.tflite", "source": "/nonexistent/clip.mp4", "annotate": "/proc/out.mp4",
            "http": "127.0.0.1:99999", "jsonl": "/proc/events.jsonl"}.get(name, "")


CLI_CASES = [name for name in RUN_OPTIONS if bad_cli_value(name) or schema_field(RUN_OPTIONS[name]).type is bool]


@pytest.mark.parametrize("name", [n for n in CLI_CASES if schema_field(RUN_OPTIONS[n]).type is not bool])
def test_every_run_option_with_a_bad_value_is_one_line_and_exit_2(monkeypatch, capsys, name):
    model = require(SHIPPED_INT8, "shipped int8 model")
    value = bad_cli_value(name)
    arguments = ["run", "--model", str(model), "--source", str(plain_photo()), f"--{name.replace('_', '-')}",
                 value]
    code, _, stderr = run_main(monkeypatch, capsys, *arguments)
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in stderr, stderr
    option, key = f"--{name.replace('_', '-')}", RUN_OPTIONS[name]
    # Either typer refuses the option by name, or the config check names the key; both quote the value.
    assert (option in lines[-1] or key in lines[-1]) and value.strip("-") in lines[-1], lines[-1]


@pytest.mark.parametrize("case, message", [
    ({"http": {"listen": "nonsense"}}, "http.listen: 'nonsense' is not HOST:PORT"),
    ({"http": {"listen": "127.0.0.1:99999"}}, "http.listen: port 99999 in '127.0.0.1:99999' is outside 1..65535"),
    ({"output": {"annotate": "/proc/x.mp4"}}, "output.annotate: cannot write '/proc/x.mp4': '/proc' is not writable"),
    ({"sinks": {"file": "/proc/events.jsonl"}}, "sinks.file: cannot write '/proc/events.jsonl'"),
    ({"source": {"spec": "/nonexistent/clip.mp4"}}, "source.spec: '/nonexistent/clip.mp4' not found"),
    ({"model": {"path": "/nonexistent.tflite"}}, "model.path: model file not found: /nonexistent.tflite"),
    ({"mqtt": {"host": "broker", "password_file": "/nonexistent"}}, "mqtt.password_file: no file at the path given"),
    ({"detector": {"name": "yunet"}}, "detector.yunet.model_path: the yunet detector needs its ONNX file"),
    ({"detector": {"blazeface": {"model_path": "/nonexistent.tflite"}}}, "detector.blazeface.model_path"),
])
def test_check_config_refuses_what_run_refuses(case, message, tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    raw = {"model": {"path": str(model)}, "source": {"spec": str(plain_photo())}, **case}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        preflight(config_from_dict(raw))


def _schema_keys(cls=Config, prefix=""):
    import dataclasses
    from typing import get_type_hints

    hints = get_type_hints(cls)
    for item in dataclasses.fields(cls):
        path = f"{prefix}.{item.name}" if prefix else item.name
        if dataclasses.is_dataclass(hints[item.name]):
            yield from _schema_keys(hints[item.name], path)
        else:
            yield path


@pytest.mark.parametrize("key", list(_schema_keys()))
def test_every_config_key_with_a_wrong_type_names_the_key(key):
    setting = schema_field(key)
    wrong = "text" if setting.type is not str else 12
    *sections, name = key.split(".")
    raw: dict = {}
    table = raw
    for section in sections:
        table = table.setdefault(section, {})
    table[name] = wrong
    with pytest.raises(ConfigError, match=rf"^{key}: expected {setting.type.__name__}, got"):
        config_from_dict(raw)


def test_check_config_cli_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[http]\nlisten = "127.0.0.1:99999"\n')
    code, _, stderr = run_main(monkeypatch, capsys, "check-config", str(config))
    assert code == 2 and stderr.strip().splitlines()[-1] == (
        "error: http.listen: port 99999 in '127.0.0.1:99999' is outside 1..65535")


def test_unreadable_inputs_exit_2(monkeypatch, capsys, tmp_path):
    model = require(SHIPPED_INT8, "shipped int8 model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(broken))
    assert code == 2 and stderr.strip().splitlines()[-1].endswith("broken.jpg: unreadable or corrupt image")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(bomb))
    assert code == 2 and "40000x40000 pixels is more than source.max_pixels" in stderr  # not exit 1 and a traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(empty))
    assert code == 2 and "the folder holds no files" in stderr and "no readable image (the folder is empty)" in stderr
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.MP4").write_bytes(b"\0" * 64)  # a folder source does not open videos, whatever they hold
    (videos / "notes.txt").write_text("not a frame")
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(videos))
    assert code == 2 and stderr.strip().splitlines()[-1].endswith(
        "no readable image (2 unreadable or not an image, 1 of them videos: a folder source reads still images; "
        "give one video file as the source)")


@pytest.mark.parametrize("suffix, params", [(".png", []), (".jpg", []), (".bmp", []), (".ppm", []), (".pgm", []),
                                            (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
def test_image_headers_give_the_pixel_size_before_decoding(suffix, params):
    image = np.zeros((37, 53), np.uint8) if suffix == ".pgm" else np.zeros((37, 53, 3), np.uint8)
    assert header_size(cv2.imencode(suffix, image, params)[1].tobytes()) == (53, 37)
    assert header_size(b"GIF89a whatever") is None


def test_an_image_bomb_under_opencvs_limit_is_skipped_by_max_pixels(monkeypatch, capsys, tmp_path, caplog):
    model = require(SHIPPED_INT8, "shipped int8 model")
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    assert header_size(photo.read_bytes()[:HEADER_BYTES]) == (381, 384)  # EXIF and all, the frame header is found
    source = open_source(str(photo), max_pixels=381 * 384 - 1)  # one pixel too many for the limit
    assert list(source.frames()) == [] and "more than source.max_pixels" in caplog.text
    assert len(list(open_source(str(photo), max_pixels=381 * 384).frames())) == 1
    over_opencv = tmp_path / "over_opencv.png"
    over_opencv.write_bytes(png_bomb(40_000))  # with no limit of ours, OpenCV's own refusal is caught as well
    assert list(open_source(str(over_opencv), max_pixels=0).frames()) == []
    assert "refused by the image decoder" in caplog.text
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(20_000))  # 400 megapixels: under OpenCV's 2^30 limit, 1.2 GB once decoded
    code, _, stderr = run_main(monkeypatch, capsys, "run", "--model", str(model), "--source", str(bomb))
    assert code == 2 and "20000x20000 pixels is more than source.max_pixels (50000000)" in stderr


@pytest.mark.parametrize("cpu_model", ["../../../etc/passwd", "/opt/other/model.tflite", "sub/model.tflite", "..",
                                       "model.json"])
def test_a_sidecars_cpu_model_may_name_only_a_sibling_tflite(tmp_path, cpu_model):
    import json
    import shutil

    from edge_runtime.core.contract import load_contract
    from edge_runtime.core.errors import ModelError

    model = require(SHIPPED_INT8, "shipped int8 model")
    copy = tmp_path / "m_edgetpu.tflite"
    shutil.copy(model, copy)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    (tmp_path / "m_edgetpu.json").write_text(json.dumps({**sidecar, "edgetpu_compiled": True, "cpu_model": cpu_model}))
    with pytest.raises(ModelError, match="must name a .tflite file next to the model"):
        load_contract(copy)
    (tmp_path / "m_edgetpu.json").write_text(json.dumps({**sidecar, "edgetpu_compiled": True,
                                                         "cpu_model": "m_int8.tflite"}))
    assert load_contract(copy).cpu_model == "m_int8.tflite"


def test_the_streamed_edge_tpu_check_finds_the_marker_across_chunk_borders(tmp_path):
    from edge_runtime.core.interpreter import EDGETPU_MARKER, is_edgetpu_compiled

    for offset in range(0, 40, 3):  # the marker at every position across the border of two 32-byte chunks
        model = tmp_path / f"m{offset}.tflite"
        model.write_bytes(b"x" * (20 + offset) + EDGETPU_MARKER + b"y" * 50)
        assert is_edgetpu_compiled(model, chunk_bytes=32)
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(b"edgetpu-custom" + b"x" * 100 + b"-op")
    assert not is_edgetpu_compiled(plain, chunk_bytes=32)


def test_a_password_file_is_never_echoed_and_must_be_private(tmp_path):
    import os

    model = require(SHIPPED_INT8, "shipped int8 model")

    def preflight_with(password_file: str) -> None:
        preflight(config_from_dict({"model": {"path": str(model)}, "source": {"spec": str(plain_photo())},
                                    "mqtt": {"host": "broker", "password_file": password_file}}))

    with pytest.raises(ConfigError) as error:
        preflight_with("hunter2-S3cret!")  # the password itself, pasted where its file belongs
    assert "hunter2" not in str(error.value) and "no file at the path given" in str(error.value)
    secret = tmp_path / "mqtt-password"
    secret.write_text("hunter2\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match=r"may be read by group or others \(mode 0644\); run `chmod 600"):
        preflight_with(str(secret))
    os.chmod(secret, 0o600)
    preflight_with(str(secret))


@pytest.mark.parametrize("damage", ["truncated", "empty", "zeroed"])
def test_check_config_refuses_a_damaged_model_file(tmp_path, damage):
    import shutil

    model = require(SHIPPED_INT8, "shipped int8 model")
    data = model.read_bytes()
    broken = tmp_path / "model.tflite"
    broken.write_bytes({"truncated": data[: len(data) // 3], "empty": b"", "zeroed": bytes(len(data))}[damage])
    shutil.copy(model.with_suffix(".json"), tmp_path / "model.json")
    config = config_from_dict({"model": {"path": str(broken)}, "source": {"spec": str(plain_photo())}})
    with pytest.raises(ConfigError, match="model.path: .* does not match its sidecar model.json"):
        preflight(config)
    # Damaged before fer-convert hashed it (its sidecar matches): the load itself refuses it.
    write_contract(broken, load_contract(model))
    with pytest.raises(ConfigError, match="model.path: .* is not a loadable TFLite model"):
        preflight(config)


def test_check_config_warns_of_a_missing_camera(caplog):
    model = require(SHIPPED_INT8, "shipped int8 model")
    preflight(config_from_dict({"model": {"path": str(model)}, "source": {"spec": "/dev/video97"}}))
    assert "camera /dev/video97 is not there now" in caplog.text


def test_a_truncated_jpeg_is_reported_as_such(tmp_path, caplog):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size * 3 // 4])
    assert len(list(open_source(str(cut)).frames())) == 1  # still decodes: classified as it is
    assert "truncated JPEG (no end marker)" in caplog.text
    caplog.clear()
    assert len(list(open_source(str(photo)).frames())) == 1 and "truncated" not in caplog.text


def test_a_config_file_others_may_change_is_refused(tmp_path):
    import os

    from edge_runtime.config import load_config

    config = tmp_path / "config.toml"
    config.write_text("[model]\nthreads = 1\n")
    os.chmod(config, 0o666)
    with pytest.raises(ConfigError, match=r"may be changed by group or others \(mode 0666\); run `chmod go-w"):
        load_config(config)
    os.chmod(config, 0o644)
    assert load_config(config).model.threads == 1
