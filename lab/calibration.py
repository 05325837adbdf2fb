"""The representative dataset for int8 calibration: a stratified, seeded subset of the Training split only.

FER2013 pixels may not be redistributed, so the repository tracks only
``calibration_data/manifest.csv`` (image ids, labels and a perceptual
fingerprint) and :func:`build_calibration` materializes the images under
``calibration_data/`` (git-ignored) from the user's own copy, CSV or image
folders. PublicTest and PrivateTest are never used: they are what the quantized
model is verified on.

Copies of FER2013 differ in ids and encoding: the Kaggle CSV names rows
(``csv:<row>``), the image release names files, and a re-encoded release's JPEG
pixels differ by a few grey levels. A manifest row is therefore found by id
where the ids agree, and otherwise by the nearest fingerprint of the same
label within :data:`MATCH_TOLERANCE_BITS`: measured on the 30 CSV rows shipped
with the data, a face and its re-encoded image differ in at most 8 of the 255
bits, and two different faces in 16 or more (a near-duplicate photo of the same
face in FER2013 may differ in fewer, and is then as good a calibration image).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edge_runtime.core.errors import DataError
from edge_runtime.core.labels import LABEL_TO_INDEX, LABELS, NUM_CLASSES
from edge_runtime.core.preprocessing import INPUT_SIZE
from lab.data import FerDataset

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("calibration_data")
MANIFEST_NAME = "manifest.csv"
DEFAULT_PER_CLASS = 100
RECOMMENDED_MINIMUM = 100
MANIFEST_FIELDS = ("id", "label", "label_name", "fingerprint")
FINGERPRINT_SIDE = 16  # low-frequency DCT block: 16x16 coefficients less the mean = 255 bits
MATCH_TOLERANCE_BITS = 12


class ManifestRow(NamedTuple):
    """One calibration image: its dataset id, label and perceptual fingerprint (for cross-copy matching)."""

    id: str
    label: int
    fingerprint: str


def _fingerprint_bits(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (2 * FINGERPRINT_SIDE, 2 * FINGERPRINT_SIDE), interpolation=cv2.INTER_AREA)
    coefficients = cv2.dct(small.astype(np.float32))[:FINGERPRINT_SIDE, :FINGERPRINT_SIDE].ravel()[1:]
    return coefficients > np.median(coefficients)


def image_fingerprint(image: np.ndarray) -> str:
    """A 255-bit perceptual hash of a 48x48 face as hex: the signs of its low-frequency DCT coefficients.

    It survives re-encoding (a few grey levels of JPEG difference flip a few
    bits) and cannot be turned back into the image, so it may be committed
    where pixels may not.
    """
    return np.packbits(np.append(_fingerprint_bits(image), False)).tobytes().hex()


def _bits_of(fingerprint: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(fingerprint), np.uint8))[:FINGERPRINT_SIDE ** 2 - 1].astype(bool)


@dataclass(frozen=True)
class CalibrationSet:
    """Materialized calibration images ``(N, 48, 48)`` uint8 with labels and the ids they came from."""

    images: np.ndarray
    labels: np.ndarray
    ids: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def histogram(self) -> dict[str, int]:
        """Images per class, by label name."""
        return dict(zip(LABELS, np.bincount(self.labels, minlength=NUM_CLASSES).tolist(), strict=True))


def select_indices(dataset: FerDataset, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Indices into the Training split of ``per_class`` images of every class (all of a class if it has fewer).

    The choice is seeded, so the same seed selects the same images.
    """
    if per_class < 1:
        raise DataError(f"calibration images per class must be at least 1, got {per_class}")
    train = dataset.split("Training")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(train.labels == label)
        if len(members) == 0:
            raise DataError(f"the Training split has no {LABELS[label]} images; calibration needs every class")
        chosen.append(np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)))
    return np.concatenate(chosen)


def select_manifest(dataset: FerDataset, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> list[ManifestRow]:
    """The manifest rows of :func:`select_indices`' images."""
    train = dataset.split("Training")
    return [ManifestRow(train.ids[index], int(train.labels[index]), image_fingerprint(train.images[index]))
            for index in select_indices(dataset, per_class, seed)]


def write_manifest(rows: list[ManifestRow], path: str | Path) -> Path:
    """Write the manifest CSV (``id,label,label_name,fingerprint``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows((row.id, row.label, LABELS[row.label], row.fingerprint) for row in rows)
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"calibration manifest {path} not found; create one with "
                        "`fer-convert calibration build --data FER2013 --reselect`")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if list(reader.fieldnames or []) != list(MANIFEST_FIELDS):
            raise DataError(f"{path}: expected columns {','.join(MANIFEST_FIELDS)}, found "
                            f"{','.join(reader.fieldnames or [])}; an older manifest cannot be matched across copies: "
                            "rebuild it with `fer-convert calibration build --data FER2013 --reselect`")
        return [ManifestRow(row["id"], int(row["label"]), row["fingerprint"]) for row in reader]


def _file_name(item_id: str) -> str:
    return item_id.replace("/", "__").replace(":", "-") + ".png"


def match_manifest(rows: list[ManifestRow], dataset: FerDataset) -> tuple[list[int | None], dict[str, int]]:
    """The Training index of each manifest row in ``dataset`` (``None`` when absent), and how each was found.

    By id where the ids agree and the labels too; otherwise the nearest
    fingerprint among Training images of the same label, if within
    :data:`MATCH_TOLERANCE_BITS`.
    """
    train = dataset.split("Training")
    by_id = {item_id: index for index, item_id in enumerate(train.ids)}
    fingerprints: np.ndarray | None = None
    found: list[int | None] = []
    how = {"id": 0, "fingerprint": 0, "missing": 0}
    for row in rows:
        index = by_id.get(row.id)
        if index is not None and train.labels[index] == row.label:
            found.append(index)
            how["id"] += 1
            continue
        if fingerprints is None:  # computed once, only when some row's id is not in this copy
            fingerprints = np.stack([_fingerprint_bits(image) for image in train.images])
        distances = np.where(train.labels == row.label, (fingerprints != _bits_of(row.fingerprint)).sum(axis=1),
                             FINGERPRINT_SIDE ** 2)
        nearest = int(np.argmin(distances))
        if distances[nearest] <= MATCH_TOLERANCE_BITS:
            found.append(nearest)
            how["fingerprint"] += 1
        else:
            found.append(None)
            how["missing"] += 1
    return found, how


def manifest_images(dataset: FerDataset, manifest: str | Path = DEFAULT_DIR / MANIFEST_NAME) -> np.ndarray:
    """The manifest's calibration images as found in ``dataset`` (``(N, 48, 48)`` uint8), without writing files."""
    rows = read_manifest(manifest)
    found, how = match_manifest(rows, dataset)
    missing = [row.id for row, index in zip(rows, found, strict=True) if index is None]
    if missing:
        raise DataError(_missing_message(missing, len(rows), manifest, dataset))
    log.info("%d calibration images from %s (%d found by id, %d by fingerprint)", len(rows), manifest, how["id"],
             how["fingerprint"])
    return dataset.split("Training").images[np.asarray(found)]


def _missing_message(missing: list[str], total: int, manifest: str | Path, dataset: FerDataset) -> str:
    return (f"{len(missing)} of {total} calibration images in {manifest} are not in the Training split of "
            f"{dataset.source}, by id or by a fingerprint within {MATCH_TOLERANCE_BITS} bits (first: {missing[0]}); "
            "your copy lacks those images: run `fer-convert calibration build --data ... --reselect` to choose a "
            "subset from it")


def build_calibration(dataset: FerDataset, directory: str | Path = DEFAULT_DIR, *, reselect: bool = False,
                      per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> CalibrationSet:
    """Materialize the manifest's images from ``dataset`` as PNGs under ``directory/<class>/``.

    Rows are found by :func:`match_manifest` (by id, else by fingerprint), so a
    manifest made from the image folders also finds its images in the Kaggle
    CSV or a re-encoded release. With ``reselect`` (or no manifest yet) a fresh
    subset is chosen from this dataset and the manifest rewritten.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if reselect or not manifest_path.exists():
        write_manifest(select_manifest(dataset, per_class, seed), manifest_path)
        log.info("selected a new calibration subset (%d per class, seed %d) -> %s", per_class, seed, manifest_path)
    rows = read_manifest(manifest_path)
    found, how = match_manifest(rows, dataset)
    missing = [row.id for row, index in zip(rows, found, strict=True) if index is None]
    if missing:
        raise DataError(_missing_message(missing, len(rows), manifest_path, dataset))
    for label_name in LABELS:
        for stale in (directory / label_name).glob("*.png") if (directory / label_name).is_dir() else ():
            stale.unlink()
    train = dataset.split("Training")
    for row, index in zip(rows, found, strict=True):
        target = directory / LABELS[row.label] / _file_name(row.id)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), train.images[index])
    log.info("materialized %d calibration images under %s (%d found by id, %d by fingerprint)", len(rows), directory,
             how["id"], how["fingerprint"])
    return load_calibration(directory)


def load_calibration(directory: str | Path = DEFAULT_DIR) -> CalibrationSet:
    """Read materialized calibration images; refuse an empty set, a missing class or a wrong image size."""
    directory = Path(directory)
    images, labels, ids = [], [], []
    for label_name in LABELS:
        for file in sorted((directory / label_name).glob("*.png")) if (directory / label_name).is_dir() else ():
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DataError(f"calibration image {file} is unreadable; rebuild with `fer-convert calibration build`")
            if image.shape != (INPUT_SIZE, INPUT_SIZE):
                raise DataError(f"calibration image {file} has shape {image.shape}, expected {INPUT_SIZE}x{INPUT_SIZE} "
                                "grayscale; rebuild with `fer-convert calibration build`")
            images.append(image)
            labels.append(LABEL_TO_INDEX[label_name])
            ids.append(file.stem)
    if not images:
        raise DataError(f"calibration set missing or empty in {directory}; build it with "
                        "`fer-convert calibration build --data FER2013` (or pass --data to fer-convert)")
    label_array = np.asarray(labels, dtype=np.int64)
    absent = [LABELS[c] for c in range(NUM_CLASSES) if not np.any(label_array == c)]
    if absent:
        raise DataError(f"calibration set in {directory} has no images of class {', '.join(absent)}; every class must "
                        "be represented: rebuild with `fer-convert calibration build --data FER2013`")
    warnings = []
    if len(images) < RECOMMENDED_MINIMUM:
        warnings.append(f"only {len(images)} calibration images (fewer than {RECOMMENDED_MINIMUM}): "
                        "quantization ranges may be poorly estimated")
        log.warning(warnings[-1])
    return CalibrationSet(np.stack(images), label_array, tuple(ids), tuple(warnings))

