"""Recorded commands name what the user types, and the commit says whether the tree was clean."""

import sys

import pytest

from train.provenance import command_line, git_commit


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
