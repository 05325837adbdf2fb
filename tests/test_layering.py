"""The import contracts in .importlinter hold, and an import against their direction breaks them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _copy_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """The contracts run on a copy of the code with ``line`` appended to ``module`` (a path under the root)."""
    for package in ("edge_runtime", "train", "convert"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.tflite"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # deliberately against the layering\n")
    return lint_imports(tmp_path)


def test_an_upward_import_breaks_them(tmp_path):
    result = _copy_with(tmp_path, "edge_runtime/core/labels.py", "import train.data")
    assert result.returncode != 0
    assert "convert above train above the shared core BROKEN" in result.stdout
    assert "the core imports nothing else of the project BROKEN" in result.stdout
    assert "edge_runtime.core.labels -> train.data" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("edge_runtime/core/labels.py", "import edge_runtime.sinks.spool", "the core imports nothing else of the project"),
    ("train/metrics.py", "import edge_runtime.homeassistant", "training uses only the core of edge_runtime"),
    ("edge_runtime/core/labels.py", "import edge_runtime.a_module_written_later",
     "the core imports nothing else of the project"),
])
def test_every_runtime_module_is_covered_including_new_ones(tmp_path, module, line, broken):
    result = _copy_with(tmp_path, module, line)
    if "written_later" in line:  # the module appears after the contracts were written: still covered
        (tmp_path / "edge_runtime" / "a_module_written_later.py").write_text("VALUE = 1\n")
        result = lint_imports(tmp_path)
    assert result.returncode != 0 and f"{broken}" in result.stdout and "BROKEN" in result.stdout
