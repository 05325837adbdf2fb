"""The import contracts in .importlinter hold, an import against their direction breaks them, and the runtime's
longest import chain stays short."""

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
    assert "Contracts: 5 kept, 0 broken." in result.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """The contracts run on a copy of the code with ``line`` appended to ``module`` (a path under the root; a module
    that does not exist yet is created)."""
    for package in ("edge_runtime", "lab", "train", "convert"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.tflite"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / module
    old = target.read_text() if target.exists() else ""
    target.write_text(old + f"\n{line}  # deliberately against the layering\n")
    return lint_imports(tmp_path)


STAGES = "convert and train, independent, above the desktop lab above the shared core"


def test_an_upward_import_breaks_them(tmp_path):
    result = _copy_with(tmp_path, "edge_runtime/core/labels.py", "import lab.data")
    assert result.returncode != 0
    assert f"{STAGES} BROKEN" in result.stdout
    assert "the core imports nothing else of the project BROKEN" in result.stdout
    assert "edge_runtime.core.labels -> lab.data" in result.stdout


@pytest.mark.parametrize("module, line, shown", [
    ("convert/cli.py", "import train.fit", "convert.cli -> train.fit"),  # the two stages share only the lab
    ("lab/metrics.py", "import train.augment", "lab.metrics -> train.augment"),  # the lab is below both
])
def test_the_desktop_stages_meet_only_in_the_lab(tmp_path, module, line, shown):
    result = _copy_with(tmp_path, module, line)
    assert result.returncode != 0 and f"{STAGES} BROKEN" in result.stdout and shown in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("edge_runtime/core/labels.py", "import edge_runtime.sinks.spool", "the core imports nothing else of the project"),
    ("lab/metrics.py", "import edge_runtime.homeassistant", "training and the lab use only the core of edge_runtime"),
    ("edge_runtime/core/labels.py", "import edge_runtime.a_module_written_later",
     "the core imports nothing else of the project"),
])
def test_every_runtime_module_is_covered_including_new_ones(tmp_path, module, line, broken):
    result = _copy_with(tmp_path, module, line)
    if "written_later" in line:  # the module appears after the contracts were written: still covered
        (tmp_path / "edge_runtime" / "a_module_written_later.py").write_text("VALUE = 1\n")
        result = lint_imports(tmp_path)
    assert result.returncode != 0 and f"{broken}" in result.stdout and "BROKEN" in result.stdout


FLOORS = "the runtime's floors: entry points, composition root, config and loop"


@pytest.mark.parametrize("module, line, shown", [
    # a part importing another part (parts know only the core)
    ("edge_runtime/smoothing.py", "import edge_runtime.sinks", "edge_runtime.smoothing -> edge_runtime.sinks"),
    # the loop reaching up to the config (it takes its parts built)
    ("edge_runtime/pipeline.py", "import edge_runtime.config", "edge_runtime.pipeline -> edge_runtime.config"),
    # a new module, written after the contracts, on no floor: the floors contract is exhaustive
    ("edge_runtime/a_module_written_later.py", "import edge_runtime.core.labels", "a_module_written_later"),
])
def test_the_runtime_floors_catch_a_sideways_import_and_an_unplaced_module(tmp_path, module, line, shown):
    result = _copy_with(tmp_path, module, line)
    assert result.returncode != 0
    assert f"{FLOORS}" in result.stdout and "BROKEN" in result.stdout.split(FLOORS)[1][:200]
    assert shown in result.stdout


def component(module: str) -> str:
    """The runtime component a module belongs to: ``edge_runtime.X`` for a module or a package X (a package counts
    once, as one part or the core), and the package's own ``__init__`` counts with the API it re-exports."""
    parts = module.split(".")
    return "edge_runtime.api" if parts == ["edge_runtime"] else ".".join(parts[:2])


def longest_chain(graph, within: str, name=lambda m: m) -> list[str]:
    """The longest chain of imports between (named) modules under ``within``, by depth-first search."""
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if module.startswith(within):
            targets = {name(t) for t in graph.find_modules_directly_imported_by(module) if t.startswith(within)}
            edges.setdefault(name(module), set()).update(targets - {name(module)})
    memo: dict[str, list[str]] = {}

    def chain_from(node: str) -> list[str]:
        if node not in memo:
            memo[node] = [node]  # the import graph between components has no cycles (the floors contract)
            memo[node] = [node] + max((chain_from(n) for n in edges.get(node, ())), key=len, default=[])
        return memo[node]

    return max((chain_from(node) for node in edges), key=len)


def test_the_longest_import_chain_of_the_runtime_is_five_components():
    grimp = pytest.importorskip("grimp")
    chain = longest_chain(grimp.build_graph("edge_runtime", cache_dir=None), "edge_runtime", component)
    assert len(chain) <= 5, " -> ".join(chain)
    # and the measure can fail: the old tower (cli -> service -> health -> preview -> pipeline -> ...) was 9 long
    assert chain[0] in ("edge_runtime.cli", "edge_runtime.api") and chain[-1] == "edge_runtime.core"


def _functions_longer_than(limit: int) -> list[str]:
    import ast

    long = []
    for package in ("edge_runtime", "lab", "train", "convert"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_no_function_is_longer_than_sixty_lines():
    assert _functions_longer_than(60) == []
    # The measure sees functions: the longest ones are just under the limit.
    assert _functions_longer_than(50) != []
