"""The calibration manifest finds its images in any copy of FER2013: by id, else by perceptual fingerprint."""

import shutil

import cv2
import numpy as np
import pytest

from edge_runtime.core.errors import DataError
from lab.calibration import (
    MANIFEST_NAME,
    ManifestRow,
    build_calibration,
    image_fingerprint,
    match_manifest,
    read_manifest,
)
from lab.data import FerDataset, Split, load_csv
from tests.conftest import FER_HEAD_CSV, ROOT, require

COMMITTED_MANIFEST = ROOT / "calibration_data" / MANIFEST_NAME


@pytest.fixture(scope="module")
def head_csv():
    """The first 30 rows of the original Kaggle fer2013.csv (ids csv:<row>, the original pixels)."""
    return load_csv(require(FER_HEAD_CSV, "the head of fer2013.csv"))


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def _reencoded(dataset: FerDataset, quality: int) -> FerDataset:
    """The same Training faces as JPEGs of another quality and under CSV-style ids: another copy of FER2013."""
    train = dataset.split("Training")
    images = np.stack([cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                                    cv2.IMREAD_GRAYSCALE) for image in train.images])
    ids = tuple(f"csv:{row}" for row in range(len(train)))
    return FerDataset("re-encoded copy", {**dataset.splits, "Training": Split(images, train.labels, ids)})


def test_csv_rows_are_found_in_the_image_release_by_fingerprint(head_csv, fer_full):
    """Kaggle CSV -> image release: a manifest made from CSV rows finds the same faces among the JPEGs."""
    csv_train = head_csv.split("Training")
    rows = [ManifestRow(item_id, int(label), image_fingerprint(image))
            for item_id, label, image in zip(csv_train.ids, csv_train.labels, csv_train.images, strict=True)]
    found, how = match_manifest(rows, fer_full)
    assert how == {"id": 0, "fingerprint": len(rows), "missing": 0}
    archive = fer_full.split("Training")
    # Each match is the same face: within the JPEG-level difference the data README measured (2.2-4.8 grey levels).
    for image, index in zip(csv_train.images, found, strict=True):
        assert _rms(image, archive.images[index]) < 6


def test_image_release_rows_are_found_in_the_csv_by_fingerprint(head_csv, fer_full):
    """Image release -> Kaggle CSV, the other direction; a face that is not in the CSV is not matched to another."""
    csv_train = head_csv.split("Training")
    archive = fer_full.split("Training")
    forward = [ManifestRow(i, int(label), image_fingerprint(image))
               for i, label, image in zip(csv_train.ids, csv_train.labels, csv_train.images, strict=True)]
    indices, _ = match_manifest(forward, fer_full)
    rows = [ManifestRow(archive.ids[i], int(archive.labels[i]), image_fingerprint(archive.images[i])) for i in indices]
    # A different face of a class the CSV head has: its id is unknown there and no CSV face is within tolerance.
    stranger = next(i for i in range(len(archive)) if i not in indices and archive.labels[i] == csv_train.labels[0])
    rows.append(ManifestRow(archive.ids[stranger], int(archive.labels[stranger]),
                            image_fingerprint(archive.images[stranger])))
    found, how = match_manifest(rows, head_csv)
    assert how == {"id": 0, "fingerprint": len(csv_train), "missing": 1}
    assert found[:-1] == list(range(len(csv_train))) and found[-1] is None


def test_the_committed_manifest_materializes_from_the_sharp_and_the_circulating_copy(fer_full, fer_blurred_root,
                                                                                     tmp_path):
    from lab.data import load_fer2013

    rows = read_manifest(COMMITTED_MANIFEST)
    assert len(rows) == 700
    for name, dataset in (("sharp", fer_full), ("blurred", load_fer2013(fer_blurred_root))):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(COMMITTED_MANIFEST, folder / MANIFEST_NAME)
        calibration = build_calibration(dataset, folder)
        assert len(calibration.labels) == 700 and set(calibration.histogram().values()) == {100}
    # The manifest was made from the sharp copy: its fingerprints are those of the sharp images.
    train = fer_full.split("Training")
    position = {item_id: i for i, item_id in enumerate(train.ids)}
    assert all(image_fingerprint(train.images[position[row.id]]) == row.fingerprint for row in rows)


@pytest.mark.slow
def test_a_reencoded_copy_under_other_ids_needs_no_reselect(fer_full, tmp_path):
    shutil.copy(COMMITTED_MANIFEST, tmp_path / MANIFEST_NAME)
    copy = _reencoded(fer_full, quality=75)
    calibration = build_calibration(copy, tmp_path)
    assert len(calibration.labels) == 700 and all(item.startswith("train__") for item in calibration.ids)
    # Every materialized image is the manifest's face, re-encoded at quality 75: a few grey levels (up to ~6 here)
    # away from the original, where two different faces are tens of grey levels apart.
    train = fer_full.split("Training")
    position = {item_id: i for i, item_id in enumerate(train.ids)}
    originals = {row.id: train.images[position[row.id]] for row in read_manifest(tmp_path / MANIFEST_NAME)}
    for label_folder in tmp_path.iterdir():
        for file in label_folder.glob("*.png") if label_folder.is_dir() else ():
            item_id = file.stem.replace("__", "/")
            assert _rms(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), originals[item_id]) < 10


def test_a_copy_without_the_images_is_refused_with_the_fix(fer_full, tmp_path):
    # The manifest's ids renamed and its fingerprints inverted: no face of this copy is within tolerance.
    rows = read_manifest(COMMITTED_MANIFEST)[:3]
    flipped = [ManifestRow(f"elsewhere/{row.id}", row.label,
                           bytes(255 - b for b in bytes.fromhex(row.fingerprint)).hex()) for row in rows]
    from lab.calibration import write_manifest

    write_manifest(flipped, tmp_path / MANIFEST_NAME)
    with pytest.raises(DataError, match="3 of 3 calibration images .* --reselect"):
        build_calibration(fer_full, tmp_path)


def test_an_old_digest_manifest_asks_for_reselect(tmp_path, fer_small):
    (tmp_path / MANIFEST_NAME).write_text("id,label,label_name,pixel_digest\ntrain/a.jpg,0,angry,d0f19ea22f43deb3\n")
    with pytest.raises(DataError, match="--reselect"):
        build_calibration(fer_small, tmp_path)
