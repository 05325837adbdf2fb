"""FER2013 loaders: the Kaggle challenge CSV and the image-folder release.

Both return a :class:`FerDataset`: per split (Training, PublicTest,
PrivateTest) the images as ``(N, 48, 48)`` uint8 arrays that went through the
shared :func:`edge_runtime.core.preprocessing.preprocess_face`, their labels in the
FER2013 order, and stable ids (``csv:<row>`` for CSV rows counted from 0 after
the header, the relative image path for image folders) so a subset such as the
calibration set can be named without copying pixels.

Bad input raises :class:`DataError` naming the file or row; with
``skip_bad=True`` bad rows/files are skipped, logged and counted instead.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.core.errors import DataError
from edge_runtime.core.labels import LABEL_TO_INDEX, LABELS, NUM_CLASSES
from edge_runtime.core.preprocessing import IMAGE_SUFFIXES, INPUT_SIZE, preprocess_face

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
PIXELS_PER_IMAGE = INPUT_SIZE * INPUT_SIZE
CSV_COLUMNS = ("emotion", "pixels", "Usage")
# The image-folder release puts Training under train/ and both test splits under test/.
SPLIT_FOLDER = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}
DATA_ENV_VAR = "FER2013_DIR"


@dataclass(frozen=True)
class Split:
    """One split: images ``(N, 48, 48)`` uint8, labels ``(N,)`` int64 and ids."""

    images: np.ndarray
    labels: np.ndarray
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> list[int]:
        """Number of images per class, in label order."""
        return np.bincount(self.labels, minlength=NUM_CLASSES).tolist()

    def subset(self, indices: np.ndarray) -> "Split":
        """The images at ``indices``, in that order."""
        return Split(self.images[indices], self.labels[indices], tuple(self.ids[i] for i in indices))


@dataclass(frozen=True)
class FerDataset:
    """FER2013 split into Training, PublicTest and PrivateTest."""

    source: str
    splits: dict[str, Split]
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)

    def split(self, name: str) -> Split:
        """Return split ``name``; an unknown or empty split is a :class:`DataError`."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        split = self.splits.get(name)
        if split is None or len(split) == 0:
            raise DataError(f"split {name} is empty in {self.source}; the dataset must contain {name} images")
        return split


def pixel_digest(image: np.ndarray) -> str:
    """A short digest of an image's exact pixels (finds exact duplicates and the same image in another copy)."""
    return hashlib.blake2b(image.tobytes(), digest_size=8).hexdigest()


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """The dataset path from ``--data`` or, when absent, the ``FER2013_DIR`` environment variable."""
    if path is None or str(path) == "":
        env = os.environ.get(DATA_ENV_VAR)
        if not env:
            raise DataError("no dataset given: pass --data PATH (fer2013.csv or the image-folder root) "
                            f"or set {DATA_ENV_VAR}")
        path = env
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"dataset path {resolved} does not exist; "
                        "pass --data with fer2013.csv or a folder holding train/ and test/")
    return resolved


def load_fer2013(path: str | os.PathLike | None, *, skip_bad: bool = False, limit_per_split: int | None = None,
                 seed: int = 0) -> FerDataset:
    """Load FER2013 from a CSV file, a folder holding ``fer2013.csv``, or an image-folder root.

    ``limit_per_split`` keeps a stratified random subset of at most that many images per
    split (for quick runs and tests); the full dataset is loaded otherwise.
    """
    root = resolve_data_path(path)
    if root.is_file():
        dataset = load_csv(root, skip_bad=skip_bad)
    elif (root / "fer2013.csv").is_file():
        dataset = load_csv(root / "fer2013.csv", skip_bad=skip_bad)
    elif (root / "train").is_dir() or (root / "test").is_dir():
        dataset = load_image_folders(root, skip_bad=skip_bad)
    else:
        raise DataError(f"{root} is neither a FER2013 CSV nor a folder with train/ and test/ (or fer2013.csv); "
                        "unpack the image-folder release there or point --data at fer2013.csv")
    if limit_per_split is not None:
        dataset = _limit(dataset, limit_per_split, seed)
    return dataset


def _limit(dataset: FerDataset, limit: int, seed: int) -> FerDataset:
    limited = {name: stratified_subset(split, limit, seed) for name, split in dataset.splits.items()}
    return FerDataset(dataset.source, limited, dataset.skipped, dataset.skipped_reasons)


def stratified_subset(split: Split, size: int, seed: int) -> Split:
    """At most ``size`` images of ``split``, the same fraction from every class (at least one of each present class)."""
    if len(split) <= size:
        return split
    rng = np.random.default_rng(seed)
    fraction = size / len(split)
    chosen = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(split.labels == label)
        if len(members):
            take = max(1, int(round(fraction * len(members))))
            chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return split.subset(np.sort(np.concatenate(chosen)))


class _Collector:
    """Accumulates images per split and applies the skip-or-raise policy."""

    def __init__(self, source: str, skip_bad: bool):
        self.source = source
        self.skip_bad = skip_bad
        self.images: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
        self.labels: dict[str, list[int]] = {name: [] for name in SPLITS}
        self.ids: dict[str, list[str]] = {name: [] for name in SPLITS}
        self.skipped_reasons: list[str] = []

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message + " (pass --skip-bad to skip such entries and count them)")
        self.skipped_reasons.append(message)
        if len(self.skipped_reasons) <= 10:
            log.warning("skipping: %s", message)

    def add(self, split: str, image: np.ndarray, label: int, item_id: str) -> None:
        self.images[split].append(image)
        self.labels[split].append(label)
        self.ids[split].append(item_id)

    def finish(self) -> FerDataset:
        splits = {}
        for name in SPLITS:
            images = (np.stack(self.images[name]) if self.images[name]
                      else np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8))
            splits[name] = Split(images, np.asarray(self.labels[name], dtype=np.int64), tuple(self.ids[name]))
        if self.skipped_reasons:
            log.warning("skipped %d bad entries in %s", len(self.skipped_reasons), self.source)
        total = sum(len(split) for split in splits.values())
        if total == 0:
            raise DataError(f"no usable images in {self.source}")
        return FerDataset(self.source, splits, len(self.skipped_reasons), self.skipped_reasons)


def parse_csv_pixels(text: str) -> np.ndarray:
    """Parse the ``pixels`` field (2304 space-separated integers 0..255) into a 48x48 uint8 array.

    Raises ``ValueError`` with a description of the problem.
    """
    parts = text.split()
    if len(parts) != PIXELS_PER_IMAGE:
        raise ValueError(f"expected {PIXELS_PER_IMAGE} pixels, got {len(parts)}")
    try:
        values = np.array([int(p) for p in parts], dtype=np.int64)
    except ValueError as error:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise ValueError(f"non-numeric pixel value {bad!r}") from error
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixel values must be 0..255, found {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(INPUT_SIZE, INPUT_SIZE)


def load_csv(path: Path, *, skip_bad: bool = False) -> FerDataset:
    """Load the Kaggle challenge file (``emotion,pixels,Usage``)."""
    collector = _Collector(str(path), skip_bad)
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from error
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}; "
                            f"a FER2013 CSV has the header {','.join(CSV_COLUMNS)}")
        for row_number, row in enumerate(reader):
            where = f"{path} row {row_number} (line {row_number + 2})"
            usage = (row.get("Usage") or "").strip()
            if usage not in SPLITS:
                collector.bad(f"{where}: unknown Usage {usage!r}; expected one of {', '.join(SPLITS)}")
                continue
            emotion_text = (row.get("emotion") or "").strip()
            if not emotion_text.isdigit() or int(emotion_text) >= NUM_CLASSES:
                collector.bad(f"{where}: emotion {emotion_text!r} is not a class index 0..{NUM_CLASSES - 1}")
                continue
            try:
                image = parse_csv_pixels(row.get("pixels") or "")
            except ValueError as error:
                collector.bad(f"{where}: {error}")
                continue
            collector.add(usage, image, int(emotion_text), f"csv:{row_number}")
    return collector.finish()


def _split_of_filename(name: str) -> str | None:
    prefix = name.split("_", 1)[0]
    return prefix if prefix in SPLITS else None


def load_image_folders(root: Path, *, skip_bad: bool = False) -> FerDataset:
    """Load ``train|test/<class>/{Training,PublicTest,PrivateTest}_<id>.jpg``.

    The split of an image comes from its file-name prefix; every class folder
    must exist under every split folder present.
    """
    collector = _Collector(str(root), skip_bad)
    for folder in sorted({SPLIT_FOLDER[s] for s in SPLITS}):
        split_dir = root / folder
        if not split_dir.is_dir():
            raise DataError(f"missing split folder {split_dir}; the image-folder release has train/ and test/")
        for label in LABELS:
            class_dir = split_dir / label
            if not class_dir.is_dir():
                raise DataError(f"missing class folder {class_dir}; expected one folder per class: {', '.join(LABELS)}")
            for file in sorted(class_dir.iterdir()):
                relative = file.relative_to(root).as_posix()
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    collector.bad(f"{file}: not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
                    continue
                split = _split_of_filename(file.name)
                if split is None or SPLIT_FOLDER[split] != folder:
                    collector.bad(f"{file}: file name must start with "
                                  f"{' or '.join(s for s in SPLITS if SPLIT_FOLDER[s] == folder)}_ inside {folder}/")
                    continue
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    collector.bad(f"{file}: unreadable or corrupt image")
                    continue
                collector.add(split, preprocess_face(image), LABEL_TO_INDEX[label], relative)
    return collector.finish()
