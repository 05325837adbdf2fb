"""The code passes the lint rules in pyproject.toml ([tool.ruff.lint]), and those rules catch what they name."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("ruff", reason="ruff is in the dev extra: pip install -e '.[dev]'")


def ruff_check(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``ruff check`` with the configuration of the pyproject.toml in ``cwd``, run by this interpreter."""
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           *map(str, paths)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_passes_the_lint_rules():
    result = ruff_check(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_rules_catch_a_long_line_an_unused_import_and_unsorted_imports(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    module = tmp_path / "offender.py"
    module.write_text("import sys\nimport json\n\nTEXT = \"" + "x" * 120 + "\"\n")
    result = ruff_check(module, cwd=tmp_path)
    assert result.returncode == 1
    # Each finding reads "offender.py:ROW:COLUMN: CODE message".
    found = {line.split(": ", 1)[1].split()[0] for line in result.stdout.splitlines() if line.startswith(module.name)}
    assert found == {"E501", "F401", "I001"}, result.stdout
