"""How the benchmarks start a measured process: pinned to one core, quiet, from the repository root.

Pinning (`taskset -c 0`, where it exists) keeps a timing from depending on what else the machine runs; the
environment silences TensorFlow's start-up chatter, which the lab imports bring in; the repository root as working
directory makes the project's relative defaults (models/, calibration_data/) resolve as they do for a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def runtime_cli(*arguments: str) -> list[str]:
    """The command line of ``edge-runtime`` with ``arguments``, run by this Python (the code of this checkout)."""
    return [sys.executable, "-m", "edge_runtime.cli", *arguments]


def pinned(command: list[str], pin: bool = True) -> list[str]:
    """``command`` pinned to core 0 when ``pin`` and taskset is installed; unchanged otherwise."""
    return ["taskset", "-c", "0", *command] if pin and shutil.which("taskset") else list(command)


def quiet_environment() -> dict[str, str]:
    """This process's environment with TensorFlow's informational logging off."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def start(command: list[str], **popen) -> subprocess.Popen:
    """``command`` started pinned, from the repository root, in the quiet environment (``popen``: Popen's options)."""
    return subprocess.Popen(pinned(command), cwd=ROOT, env=quiet_environment(), **popen)
