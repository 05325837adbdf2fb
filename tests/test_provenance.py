"""Recorded commands name what the user types, and the commit says whether the tree was clean."""

import shutil
import subprocess
import sys

import pytest

from lab.provenance import command_line, git_commit


@pytest.mark.parametrize("argv0, expected", [
    ("/work/main/convert/cli.py", "fer-convert"),     # python -m convert.cli
    ("/work/main/train/cli.py", "fer-train"),
    ("/usr/local/bin/fer-convert", "fer-convert"),    # the console script
    ("benchmarks/soak.py", "soak.py"),
])
def test_recorded_command_names_the_console_script(monkeypatch, argv0, expected):
    monkeypatch.setattr(sys, "argv", [argv0, "models/fer_cnn_lstm.keras", "--name", "a b"])
    assert command_line() == f"{expected} models/fer_cnn_lstm.keras --name 'a b'"


def test_commit_is_a_hash_with_an_optional_dirty_mark():
    commit = git_commit()
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40


def test_fresh_results_do_not_make_a_commit_dirty_but_changed_code_does(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "run.json").write_text("{}")
    (tmp_path / "training_checkpoints" / "teacher").mkdir(parents=True)
    (tmp_path / "training_checkpoints" / "teacher" / "state.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "start")
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "run.json").write_text('{"fresh": true}')
    (tmp_path / "training_checkpoints" / "teacher" / "state.json").write_text('{"epochs_done": 2}')  # a teacher trains
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("-dirty")
