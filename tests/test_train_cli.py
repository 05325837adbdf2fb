"""fer-train as a user runs it: project errors are one clear line and a non-zero exit, never a traceback."""

import time

import pytest

from tests.conftest import run_cli

# Runs a console script's main() with TensorFlow, Keras and imbalanced-learn blocked, as on a runtime-only install.
WITHOUT_TRAIN_EXTRA = ("import sys\n"
                       "for name in ('tensorflow', 'keras', 'imblearn'):\n"
                       "    sys.modules[name] = None\n"
                       "sys.argv = sys.argv[1:]\n"
                       "from {module} import main\n"
                       "main()\n")


def test_missing_dataset_is_one_line_error(tmp_path):
    result = run_cli("-m", "train.cli", "fit", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: dataset path")


def test_unknown_model_and_missing_metrics(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    result = run_cli("-m", "train.cli", "fit", "--model", "vgg", "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value for '--model'" in result.stderr and "'vgg' is not one of" in result.stderr
    result = run_cli("-m", "train.cli", "compare", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "metrics file(s) not found" in result.stderr


@pytest.mark.slow
def test_corrupt_keras_file(tmp_path):
    bogus = tmp_path / "bogus.keras"
    bogus.write_bytes(b"not a zip archive")
    result = run_cli("-m", "train.cli", "evaluate", str(bogus), "--data", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error:" in result.stderr


def test_usage_error_is_short_not_a_traceback(tmp_path):
    result = run_cli("-m", "train.cli", "fit", "--no-such-option")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no-such-option" in result.stderr


@pytest.mark.parametrize("module, arguments, option", [
    ("train.cli", ["fit", "--model", "resnet"], "--model"),
    ("train.cli", ["fit", "--balance", "smote"], "--balance"),
    ("train.cli", ["fit", "--schedule", "step"], "--schedule"),
    ("convert.cli", ["m.keras", "--quantize", "int4"], "--quantize"),
    ("convert.cli", ["m.keras", "--io", "int16"], "--io"),
])
def test_a_typo_in_a_choice_fails_fast_without_tensorflow(tmp_path, module, arguments, option):
    script = tmp_path / "no_tensorflow.py"
    script.write_text(WITHOUT_TRAIN_EXTRA.format(module=module))
    started = time.monotonic()
    result = run_cli(str(script), module, *arguments)
    seconds = time.monotonic() - started
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # The choice is refused by name (not by a failed TensorFlow import, which is blocked here).
    assert f"Invalid value for '{option}'" in result.stderr and "is not one of" in result.stderr
    assert seconds < 5, f"took {seconds:.1f} s: choices must be checked before anything heavy loads"


@pytest.mark.parametrize("module, arguments", [
    ("train.cli", ["fit", "--data", "fer2013.csv"]),
    ("train.cli", ["evaluate", "m.keras"]),
    ("convert.cli", ["m.keras", "--quantize", "int8"]),
])
def test_a_runtime_only_install_names_the_extra_to_install(tmp_path, module, arguments):
    script = tmp_path / "no_tensorflow.py"
    script.write_text(WITHOUT_TRAIN_EXTRA.format(module=module))
    result = run_cli(str(script), module, *arguments)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "needs the 'train' extra" in lines[-1]
    assert "pip install 'fer-edge[train]'" in lines[-1]
