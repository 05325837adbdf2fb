"""Both FER2013 loaders, on generated files and on the real ones, and every bad-input error."""

import csv

import cv2
import numpy as np
import pytest

from edge_runtime.core.errors import DataError
from edge_runtime.core.labels import LABELS
from lab.data import load_fer2013, resolve_data_path
from tests.conftest import FER_HEAD_CSV, require

PIXELS = " ".join(str(v % 256) for v in range(2304))


def _write_csv(path, rows, header=("emotion", "pixels", "Usage")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _good_rows():
    usages = ["Training"] * 7 + ["PublicTest"] * 3 + ["PrivateTest"] * 2
    return [(i % 7, PIXELS, usage) for i, usage in enumerate(usages)]


def _write_folders(root, per_class=1, splits=(("train", "Training"), ("test", "PublicTest"), ("test", "PrivateTest"))):
    rng = np.random.default_rng(0)
    for folder, prefix in splits:
        for label in LABELS:
            directory = root / folder / label
            directory.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                cv2.imwrite(str(directory / f"{prefix}_{label}{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return root


def test_csv_loader_generated(tmp_path):
    dataset = load_fer2013(_write_csv(tmp_path / "fer2013.csv", _good_rows()))
    assert [len(dataset.split(s)) for s in ("Training", "PublicTest", "PrivateTest")] == [7, 3, 2]
    training = dataset.split("Training")
    assert training.labels.tolist() == list(range(7))
    assert training.ids[0] == "csv:0" and dataset.split("PublicTest").ids[0] == "csv:7"
    expected = (np.arange(2304) % 256).astype(np.uint8).reshape(48, 48)
    np.testing.assert_array_equal(training.images[3], expected)


def test_folder_holding_fer2013_csv_is_found(tmp_path):
    _write_csv(tmp_path / "fer2013.csv", _good_rows())
    assert len(load_fer2013(tmp_path).split("Training")) == 7


def test_csv_loader_real_head():
    path = require(FER_HEAD_CSV, "FER2013 CSV head")
    dataset = load_fer2013(path)
    training = dataset.split("Training")
    assert len(training) == 30 and training.images.shape == (30, 48, 48)
    with open(path) as handle:
        first = next(csv.DictReader(handle))
    assert training.labels[0] == int(first["emotion"])
    np.testing.assert_array_equal(training.images[0].ravel(), np.array(first["pixels"].split(), dtype=np.uint8))


def test_folder_loader_generated(tmp_path):
    dataset = load_fer2013(_write_folders(tmp_path, per_class=2))
    for split in ("Training", "PublicTest", "PrivateTest"):
        assert dataset.split(split).class_counts() == [2] * 7
    assert dataset.split("Training").ids[0].startswith("train/angry/Training_")


def test_folder_loader_real(fer_full):
    counts = {name: len(split) for name, split in fer_full.splits.items()}
    assert counts == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
    assert fer_full.split("Training").class_counts() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    test_counts = np.add(fer_full.split("PublicTest").class_counts(), fer_full.split("PrivateTest").class_counts())
    assert test_counts.tolist() == [958, 111, 1024, 1774, 1247, 831, 1233]


def test_data_from_environment(tmp_path, monkeypatch):
    _write_csv(tmp_path / "fer2013.csv", _good_rows())
    monkeypatch.setenv("FER2013_DIR", str(tmp_path))
    assert resolve_data_path(None) == tmp_path
    monkeypatch.delenv("FER2013_DIR")
    with pytest.raises(DataError, match="--data"):
        resolve_data_path(None)


@pytest.mark.parametrize("row, message", [
    ((0, "1 2 3", "Training"), r"row 0 \(line 2\): expected 2304 pixels, got 3"),
    ((0, PIXELS.replace("17", "x7", 1), "Training"), r"non-numeric pixel value 'x7'"),
    ((0, PIXELS, "Validation"), r"unknown Usage 'Validation'"),
    ((9, PIXELS, "Training"), r"emotion '9' is not a class index"),
    ((0, PIXELS.replace("17", "300", 1), "Training"), r"pixel values must be 0..255"),
])
def test_csv_bad_rows(tmp_path, row, message):
    path = _write_csv(tmp_path / "bad.csv", [row] + _good_rows())
    with pytest.raises(DataError, match=message):
        load_fer2013(path)
    skipped = load_fer2013(path, skip_bad=True)
    assert skipped.skipped == 1 and len(skipped.split("Training")) == 7


def test_csv_missing_column(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", [(0, PIXELS)], header=("emotion", "pixels"))
    with pytest.raises(DataError, match="missing column.*Usage"):
        load_fer2013(path)


def test_empty_split(tmp_path):
    dataset = load_fer2013(_write_csv(tmp_path / "train_only.csv", [(1, PIXELS, "Training")]))
    with pytest.raises(DataError, match="split PublicTest is empty"):
        dataset.split("PublicTest")


def test_missing_class_folder(tmp_path):
    _write_folders(tmp_path)
    for file in (tmp_path / "test" / "disgust").iterdir():
        file.unlink()
    (tmp_path / "test" / "disgust").rmdir()
    with pytest.raises(DataError, match=r"missing class folder .*test/disgust"):
        load_fer2013(tmp_path)


def test_unreadable_image_and_non_image(tmp_path):
    _write_folders(tmp_path)
    corrupt = tmp_path / "train" / "happy" / "Training_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="Training_corrupt.jpg: unreadable or corrupt image"):
        load_fer2013(tmp_path)
    (tmp_path / "train" / "sad" / "notes.txt").write_text("hello")
    dataset = load_fer2013(tmp_path, skip_bad=True)
    assert dataset.skipped == 2 and len(dataset.split("Training")) == 7


def test_missing_path_and_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_fer2013(tmp_path / "nope")
    with pytest.raises(DataError, match="neither a FER2013 CSV nor a folder"):
        load_fer2013(tmp_path)
