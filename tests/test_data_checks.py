"""The split-consistency check catches a blurred Training split (the real circulating copy) and passes a sharp one."""

import json

import cv2
import numpy as np
import pytest

from edge_runtime.core.errors import DataError
from lab.data import FerDataset, Split
from train.data_checks import check_dataset, estimate_blur_sigma, sharpness
from train.fit import FitConfig, fit


def _dataset_from(images: np.ndarray, labels: np.ndarray, train_sigma: float) -> FerDataset:
    half = len(images) // 2
    train_images = images[:half]
    if train_sigma:
        train_images = np.stack([cv2.GaussianBlur(image, (0, 0), train_sigma) for image in train_images])
    ids = tuple(str(i) for i in range(len(images)))
    return FerDataset("test", {
        "Training": Split(train_images, labels[:half], ids[:half]),
        "PublicTest": Split(images[half:], labels[half:], ids[half:]),
        "PrivateTest": Split(images[half:], labels[half:], ids[half:]),
    })


@pytest.fixture(scope="module")
def sharp_faces(fer_full):
    """Real, sharp FER2013 test images."""
    split = fer_full.split("PrivateTest")
    return split.images[:600], split.labels[:600]


def test_blurred_training_split_is_flagged(sharp_faces):
    images, labels = sharp_faces
    _, findings = check_dataset(_dataset_from(images, labels, train_sigma=3.0))
    assert [f.code for f in findings] == ["blurred-training-split"]
    assert "sigma ~" in findings[0].message and "unmodified FER2013" in findings[0].message


def test_consistent_splits_pass(sharp_faces):
    images, labels = sharp_faces
    statistics, findings = check_dataset(_dataset_from(images, labels, train_sigma=0))
    assert findings == []
    assert statistics["Training"]["images"] == 300


def test_sigma_estimate_recovers_the_blur(sharp_faces):
    images, _ = sharp_faces
    blurred = np.stack([cv2.GaussianBlur(image, (0, 0), 2.0) for image in images])
    assert estimate_blur_sigma(images, float(np.median(sharpness(blurred)))) == pytest.approx(2.0, abs=0.5)


def test_fit_refuses_inconsistent_data_unless_told(sharp_faces, tmp_path):
    images, labels = sharp_faces
    with pytest.raises(DataError, match="--ignore-data-checks"):
        fit(_dataset_from(images, labels, train_sigma=3.0), tmp_path / "run", FitConfig(model="cnn", epochs=1))
    assert not (tmp_path / "run" / "last.keras").exists()


def test_the_circulating_copy_with_a_blurred_training_split_is_caught(fer_blurred_root):
    from tests.conftest import run_cli

    result = run_cli("-m", "train.cli", "check-data", "--data", str(fer_blurred_root))
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["blurred-training-split"]
    statistics = report["statistics"]
    assert statistics["Training"]["median_sharpness"] < 0.6 * statistics["PublicTest"]["median_sharpness"]
    # The circulating copy was blurred with sigma ~3 px; the estimate names it.
    sigma = float(report["findings"][0]["message"].split("sigma ~")[1].split(" px")[0])
    assert 2.5 <= sigma <= 3.5


def test_the_sharp_copy_passes_with_no_finding(fer_full):
    # In process, on the session's loaded copy: the command line is covered by the blurred copy's test above.
    statistics, findings = check_dataset(fer_full)
    assert findings == []
    assert statistics["Training"]["images"] == 28_709
