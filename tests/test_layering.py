"""The import contracts in .importlinter hold, and an import against their direction breaks them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    # import-linter's console script, `lint-imports`, run with this interpreter.
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", command, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_layering_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_them(tmp_path):
    for package in ("edge_runtime", "train", "convert"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.tflite"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    labels = tmp_path / "edge_runtime" / "core" / "labels.py"
    labels.write_text(labels.read_text() + "\nimport train.data  # deliberately against the layering\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "convert above train above the shared core BROKEN" in result.stdout
    assert "the core imports nothing else of the project BROKEN" in result.stdout
    assert "edge_runtime.core.labels -> train.data" in result.stdout
