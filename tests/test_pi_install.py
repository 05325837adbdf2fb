"""The Pi install keeps the system's NumPy: apt's compiled extensions still import beside the runtime.

On Raspberry Pi OS Bookworm, apt's picamera2 stack is built against NumPy 1.24; a venv made with
--system-site-packages that lets pip install NumPy 2 breaks it. This machine runs Debian 12, the base of Raspberry
Pi OS Bookworm, with the same apt NumPy: apt's SciPy (compiled against it) stands in for picamera2's extensions.
The venv is built by the documented command, `deploy/install.sh --venv-only DIR`, exactly as the service's.
"""

import json
import shutil
import subprocess

import pytest

from tests.conftest import MEDIA, ROOT, SHIPPED_INT8, require

SYSTEM_PYTHON = "/usr/bin/python3"


def _system_has(module: str) -> bool:
    return shutil.which(SYSTEM_PYTHON) is not None and subprocess.run(
        [SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_venv_only_install_keeps_apt_numpy_and_runs_the_runtime(tmp_path):
    if not (_system_has("numpy") and _system_has("scipy") and _system_has("venv")):
        pytest.skip("needs Debian's python3-numpy, python3-scipy and python3-venv (CI installs them)")
    system_numpy = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__version__)"],
                                  capture_output=True, text=True).stdout.strip()
    venv = tmp_path / "venv"
    built = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--venv-only", str(venv)],
                           capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    python = venv / "bin" / "python"
    # The venv's NumPy is apt's, and an apt extension compiled against it imports and works.
    probe = subprocess.run([str(python), "-c", "import json, numpy, scipy.linalg; "
                            "print(json.dumps([numpy.__version__, numpy.__file__, "
                            "float(scipy.linalg.det(numpy.eye(3) * 2))]))"], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    version, location, determinant = json.loads(probe.stdout)
    assert version == system_numpy and location.startswith("/usr/lib/python3/dist-packages/")
    assert determinant == 8.0
    # The runtime, installed the documented way, runs on a real photo.
    model = require(SHIPPED_INT8, "shipped int8 model")
    photo = require(MEDIA / "justin.jpg", "justin.jpg")
    run = subprocess.run([str(venv / "bin" / "edge-runtime"), "run", "--model", str(model), "--source", str(photo)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(events) == 1 and events[0]["label"]
