"""The Pi install on arm64: a Debian 12 arm64 root under qemu-user, `deploy/install.sh --venv-only` inside it, apt's
NumPy kept, and the photo example giving what it gives on x86 (same box and label, probabilities within 0.01).

What it proves and what it does not is in docs/deploy.md ("Proven on arm64"). It needs root (mounts, chroot),
mmdebstrap, qemu-user-static and binfmt-support (CI installs them), and the Debian mirror and the package index;
it takes about six minutes, most of it building the root.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MEDIA, ROOT, require

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def _arm64_emulation_ready() -> str:
    """Why arm64 binaries cannot run here, or "" when they can (binfmt mounted and qemu-aarch64 enabled)."""
    if os.geteuid() != 0:
        return "needs root (it mounts /proc and chroots into the arm64 root)"
    for tool in ("mmdebstrap", "qemu-aarch64-static", "update-binfmts"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (CI installs mmdebstrap, qemu-user-static and binfmt-support)"
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "binfmt_misc", "-t", "binfmt_misc", str(BINFMT)], capture_output=True)
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (BINFMT / "qemu-aarch64").exists() or "enabled" not in (BINFMT / "qemu-aarch64").read_text():
        return "binfmt_misc cannot be mounted or qemu-aarch64 enabled here (a container without that privilege)"
    return ""


@pytest.mark.slow
def test_the_pi_install_on_arm64_keeps_apt_numpy_and_matches_x86(tmp_path):
    reason = _arm64_emulation_ready()
    if reason:
        pytest.skip(reason)
    photo = require(MEDIA / "justin.jpg", "justin.jpg")  # JPEG decodes to the same pixels on both architectures
    script = ROOT / "tests" / "arm64" / "pi_install.sh"
    arm = subprocess.run(["bash", str(script), str(tmp_path), str(ROOT), str(photo)],
                         capture_output=True, text=True, timeout=1500)
    assert arm.returncode == 0, (arm.stdout[-3000:], arm.stderr[-3000:])
    lines = arm.stdout.splitlines()
    assert lines[0] == "aarch64"
    numpy_file = next(line.split(": ", 1)[1] for line in lines if line.startswith("numpy-file: "))
    assert numpy_file.startswith("/usr/lib/python3/dist-packages/numpy/")  # apt's NumPy, not a pip one
    arm_events = [json.loads(line) for line in lines if line.startswith("{")]
    x86 = subprocess.run([shutil.which("edge-runtime") or "edge-runtime", "run", "--source", str(photo)],
                         capture_output=True, text=True, timeout=120)
    assert x86.returncode == 0, x86.stderr[-2000:]
    x86_events = [json.loads(line) for line in x86.stdout.splitlines()]
    assert len(arm_events) == len(x86_events) == 1
    arm_event, x86_event = arm_events[0], x86_events[0]
    assert arm_event["box"] == x86_event["box"] and arm_event["label"] == x86_event["label"] == "happy"
    assert max(abs(arm_event["probs"][k] - x86_event["probs"][k]) for k in x86_event["probs"]) <= 0.01
