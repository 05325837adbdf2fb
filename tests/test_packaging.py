"""The package as a user gets it: the model inside it, the Python API as the README shows it, versions, clean help
pages, one log format, and (slow) a wheel installed into a fresh venv and run from another folder."""

import filecmp
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, require, run_main

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


def test_the_packaged_model_is_the_shipped_one():
    from edge_runtime.classifier import packaged_model
    from edge_runtime.config import Config

    packaged = packaged_model()
    assert Config().model.file == packaged and packaged.parent == ROOT / "edge_runtime" / "models"
    for suffix in (".tflite", ".json"):  # models/ is the source of truth; the package holds an exact copy
        assert filecmp.cmp(packaged.with_suffix(suffix), SHIPPED_INT8.with_suffix(suffix), shallow=False), suffix


def test_pyproject_declares_what_the_code_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"  # edge_runtime.config reads TOML with tomllib
    assert project["license"] == "Apache-2.0" and (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert not any("scikit-learn" in d for d in project["optional-dependencies"]["train"])  # only a test uses it
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert "training_checkpoints" not in str(packages) and "train*" not in packages["include"]


def readme_block(language: str, marker: str) -> str:
    """The README's fenced ``language`` block that contains ``marker``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(block for block in blocks if marker in block)


def test_the_python_api_works_as_the_readme_shows_it(tmp_path, monkeypatch, capsys):
    shutil.copy(require(MEDIA / "justin.jpg", "justin.jpg"), tmp_path / "photo.jpg")
    shutil.copy(require(MEDIA / "test.mp4", "test.mp4"), tmp_path / "video.mp4")
    monkeypatch.chdir(tmp_path)
    exec(readme_block("python", "EmotionRecognizer"), {})  # noqa: S102 - the README's own example, as written
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("(83, 95, 206, 206) happy 0.7")  # the photo: box, label, score, probabilities
    assert len(lines) > 50 and all(len(line.split()) == 3 for line in lines[1:])  # the video: frame, track, label


def test_the_python_api_imports_no_tensorflow_and_refuses_bad_arrays():
    code = ("import sys, numpy as np\nfrom edge_runtime import EmotionRecognizer\nfrom edge_runtime.core.errors import "
            "FerError\nr = EmotionRecognizer(overrides={'model.tta': 'none'})\nassert r.faces(np.zeros((64, 64), "
            "np.uint8)) == []\nfor bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), 'x.jpg'):\n"
            "    try:\n        r.faces(bad)\n    except FerError as e:\n        print('refused:', e)\n"
            "print('tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "False" and sum(line.startswith("refused:") for line in lines) == 3
    assert "not float32" in lines[0] and "not shape (4, 4, 2)" in lines[1]


@pytest.mark.parametrize("command, module", [("edge-runtime", "edge_runtime.cli"), ("fer-train", "train.cli"),
                                             ("fer-convert", "convert.cli")])
def test_every_command_has_a_version_and_clean_help(monkeypatch, capsys, command, module):
    import importlib

    from edge_runtime import __version__

    main = importlib.import_module(module).main
    for arguments, expected in ((["--version"], f"{command} (fer-edge) {__version__}"), (["--help"], "Usage")):
        code, out, _ = run_main(monkeypatch, capsys, *arguments, program=command, main=main)
        assert code == 0 and expected in out
        assert "<bool>" not in out  # flags take no value, and the help must not suggest one


def test_library_messages_come_out_in_the_log_format(tmp_path):
    # A damaged video makes FFmpeg print decode errors straight to descriptor 2; they must arrive as log lines.
    data = bytearray(require(MEDIA / "test.mp4", "test.mp4").read_bytes())
    data[len(data) // 2:len(data) // 2 + 100_000] = bytes(100_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", "--source", str(damaged), "--no-stdout"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "FER_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if not LOG_LINE.match(line)] == []
    assert any(" DEBUG ffmpeg: [h264 @ " in line for line in lines)  # what FFmpeg said, in our format
    assert any("unreadable frames skipped" in line for line in lines)
    final = next(line for line in lines if "processed" in line)
    assert "face events; the sinks got" in final


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_works_from_another_folder(tmp_path):
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(wheels.glob("fer_edge-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["convert", "edge_runtime", "lab", "train"]  # nothing stray
    assert {"edge_runtime/models/fer_cnn_lstm_int8.tflite", "edge_runtime/models/fer_cnn_lstm_int8.json"} <= set(names)
    assert not any(name.startswith(("tests/", "training_checkpoints/")) for name in names)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    shutil.copy(require(MEDIA / "justin.jpg", "justin.jpg"), elsewhere / "photo.jpg")
    shutil.copy(require(MEDIA / "test.mp4", "test.mp4"), elsewhere / "video.mp4")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env)

    version = run(str(venv / "bin" / "edge-runtime"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("edge-runtime (fer-edge) ")
    photo = run(str(venv / "bin" / "edge-runtime"), "run", "--source", "photo.jpg")  # the README's photo example
    assert photo.returncode == 0, photo.stderr[-2000:]
    assert '"label":"happy"' in photo.stdout
    example = run(str(venv / "bin" / "python"), "-c", readme_block("python", "EmotionRecognizer"))
    assert example.returncode == 0, example.stderr[-2000:]
    assert example.stdout.splitlines()[0].startswith("(83, 95, 206, 206) happy")
    where = run(str(venv / "bin" / "python"), "-c", "import edge_runtime; from edge_runtime.config import Config; "
                "print(edge_runtime.__file__); print(Config().model.file)")
    # The package and the model come from the virtual environment, not from the checkout.
    assert all(line.startswith(str(venv)) for line in where.stdout.splitlines())
