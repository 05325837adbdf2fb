"""The Coral path end to end: fer-convert --edgetpu -> *_edgetpu.tflite with its sidecar -> edge-runtime.

``edgetpu_compiler`` exists only for x86-64 Debian/Ubuntu from Coral's apt repository, which this machine cannot
reach, so these tests put a STAND-IN named ``edgetpu_compiler`` on PATH (a hardware/tool boundary). Like the real
compiler it writes ``<out>/<stem>_edgetpu.tflite`` and marks the model with the ``edgetpu-custom-op`` name; unlike
it, it maps nothing to an Edge TPU (it copies the graph). No Edge TPU is attached here either, so the runtime takes
its Edge TPU error or CPU-fallback path, which is what these tests check.
"""

import json
import os
import stat
import sys

import pytest

from tests.conftest import MEDIA, require, run_cli

STAND_IN_COMPILER = """#!{python}
# STAND-IN for Coral's edgetpu_compiler, for tests only: copies the model and adds the custom-op marker.
import sys
from pathlib import Path

args = sys.argv[1:]
out = Path(args[args.index("-o") + 1])
model = Path(args[-1])
(out / (model.stem + "_edgetpu.tflite")).write_bytes(model.read_bytes() + b"edgetpu-custom-op")
print("Edge TPU Compiler STAND-IN (tests only)")
print("Model compiled successfully.")
"""


@pytest.fixture(scope="module")
def stand_in_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stand_in_bin")
    compiler = folder / "edgetpu_compiler"
    compiler.write_text(STAND_IN_COMPILER.format(python=sys.executable))
    compiler.chmod(compiler.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, stand_in_path):
    from tests.test_convert import tiny_model, write_generated_csv

    work = tmp_path_factory.mktemp("edgetpu")
    tiny_model().save(work / "tiny.keras")
    data = write_generated_csv(work / "fer2013.csv")
    result = run_cli("-m", "convert.cli", str(work / "tiny.keras"), "--quantize", "int8", "--edgetpu",
                     "--data", str(data), "--out", str(work / "models"), "--report-dir", str(work / "reports"),
                     "--calibration-dir", str(work / "calibration"), "--max-drop", "100", "--min-agreement", "0",
                     "--no-debug-layers", env=stand_in_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "models"


@pytest.mark.slow
def test_edgetpu_model_gets_its_own_sidecar(converted):
    compiled = json.loads((converted / "tiny_int8_edgetpu.json").read_text())
    plain = json.loads((converted / "tiny_int8.json").read_text())
    assert compiled["edgetpu_compiled"] is True and compiled["cpu_model"] == "tiny_int8.tflite"
    assert plain["edgetpu_compiled"] is False
    # The same int8 contract and the same verification: the compiled file computes the graph it came from.
    for key in ("input", "output", "labels", "quantization", "verified", "source_sha256"):
        assert compiled[key] == plain[key]
    assert compiled["input"]["dtype"] == "uint8" and compiled["quantization"] == "int8"
    assert b"edgetpu-custom-op" in (converted / "tiny_int8_edgetpu.tflite").read_bytes()


@pytest.mark.slow
def test_runtime_falls_back_to_the_cpu_model_without_an_edge_tpu(converted):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    result = run_cli("-m", "edge_runtime.cli", "run", "--model", str(converted / "tiny_int8_edgetpu.tflite"),
                     "--backend", "edgetpu", "--source", str(photo))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no Edge TPU" in result.stderr and "falling back to the CPU" in result.stderr
    assert "running tiny_int8.tflite on the CPU in place of tiny_int8_edgetpu.tflite" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 1 and events[0]["label"]


@pytest.mark.slow
def test_runtime_refuses_without_an_edge_tpu_when_fallback_is_off(converted, tmp_path):
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    config = tmp_path / "config.toml"
    config.write_text(f'[model]\npath = "{converted / "tiny_int8_edgetpu.tflite"}"\nbackend = "edgetpu"\n'
                      "fallback_to_cpu = false\n")
    result = run_cli("-m", "edge_runtime.cli", "run", "--config", str(config), "--source", str(photo))
    assert result.returncode == 2
    assert "no Edge TPU" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_compiled_model_without_its_cpu_twin_is_refused_on_the_cpu(converted, tmp_path):
    import shutil

    for name in ("tiny_int8_edgetpu.tflite", "tiny_int8_edgetpu.json"):
        shutil.copy(converted / name, tmp_path / name)
    result = run_cli("-m", "edge_runtime.cli", "run", "--model", str(tmp_path / "tiny_int8_edgetpu.tflite"),
                     "--source", str(require(MEDIA / "justin.jpg", "justin.jpg")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "compiled for the Edge TPU and cannot run on the CPU" in result.stderr


def test_edgetpu_without_int8_is_refused_before_any_work(tmp_path):
    result = run_cli("-m", "convert.cli", str(tmp_path / "never_loaded.keras"), "--quantize", "dynamic", "--edgetpu",
                     "--out", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "--edgetpu needs --quantize int8" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
