"""Where a result came from: command line, git commit, versions, time."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

# Folders that runs write their results into (see git_commit): a paused training run's checkpoints change while it
# trains, which is data, not code.
RUN_OUTPUTS = ("benchmarks/results", "reports", "training_checkpoints")


def git_commit(root: Path | None = None) -> str:
    """The commit of the checkout at ``root`` (this project's by default), suffixed with ``-dirty`` when tracked
    files other than run outputs have changes; ``unknown`` outside git."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        # Results, reports and checkpoints are what runs write, not code: one benchmark's fresh results (or a
        # teacher training beside it) do not make the next one's commit "dirty".
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){output}" for output in RUN_OUTPUTS)], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


# ``python -m train.cli`` and the console script run the same code: records name what a user types.
CONSOLE_SCRIPTS = {"train/cli.py": "fer-train", "convert/cli.py": "fer-convert", "edge_runtime/cli.py": "edge-runtime"}


def command_line() -> str:
    """The command that started this process, as a copy-pasteable shell string (console-script name first)."""
    program = Path(sys.argv[0])
    name = CONSOLE_SCRIPTS.get(f"{program.parent.name}/{program.name}", program.name)
    return " ".join([shlex.quote(name), *(shlex.quote(a) for a in sys.argv[1:])])


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provenance() -> dict:
    """A dict describing the running code and machine, for reports."""
    return {
        "command": command_line(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "created_unix": round(time.time(), 3),
    }


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)
