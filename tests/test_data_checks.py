"""The split-consistency check catches a blurred Training split and passes consistent splits."""

import json

import cv2
import numpy as np
import pytest

from edge_runtime.errors import DataError
from train.data import FerDataset, Split
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
def sharp_faces(fer_root):
    """Real, sharp FER2013 test images (the development copy's test splits are unmodified)."""
    from train.data import load_fer2013

    split = load_fer2013(fer_root).split("PrivateTest")
    return split.images[:600], split.labels[:600]


def test_blurred_training_split_is_flagged(sharp_faces):
    images, labels = sharp_faces
    _, findings = check_dataset(_dataset_from(images, labels, train_sigma=3.0))
    assert [f.code for f in findings] == ["blurred-training-split"]
    assert "sigma ~" in findings[0].message and "unmodified FER2013" in findings[0].message
    assert "--inference-blur" in findings[0].message


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


def test_check_data_cli_exit_codes(tmp_path, fer_root):
    from tests.conftest import run_cli

    flagged = run_cli("-m", "train.cli", "check-data", "--data", str(fer_root))
    statistics = json.loads(flagged.stdout)["statistics"]
    # This copy's Training split is blurred: the command must say so with exit 1; a consistent copy exits 0.
    if statistics["Training"]["median_sharpness"] < 0.6 * statistics["PublicTest"]["median_sharpness"]:
        assert flagged.returncode == 1 and "blurred-training-split" in flagged.stdout
    else:
        assert flagged.returncode == 0
