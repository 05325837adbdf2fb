"""fer-train as a user runs it: project errors are one clear line and a non-zero exit, never a traceback."""

from tests.conftest import run_cli


def test_missing_dataset_is_one_line_error(tmp_path):
    result = run_cli("-m", "train.cli", "fit", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: dataset path")


def test_unknown_model_and_missing_metrics(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    result = run_cli("-m", "train.cli", "fit", "--model", "vgg", "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown model 'vgg'" in result.stderr
    result = run_cli("-m", "train.cli", "compare", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "metrics file(s) not found" in result.stderr


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
