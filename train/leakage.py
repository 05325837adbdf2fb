"""Audit of the seed paper's protocol: oversampling *before* splitting leaks test images into training.

The paper pools FER2013, oversamples every class to the size of the largest,
then splits at random. Oversampling copies images, so most copies of a rare
class image land on both sides of the split: the test set then contains images
the model was trained on (disgust, duplicated ~20x, scores near 1.0).

:func:`audit` rebuilds that protocol next to the honest one (train on Training,
select on PublicTest, report on PrivateTest, oversample only the Training
split), counts test images with an exact pixel duplicate in training under
both, and optionally trains the same model with the same budget under both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.core.labels import NUM_CLASSES
from lab.data import FerDataset, Split, pixel_digest

log = logging.getLogger(__name__)


def image_hashes(images: np.ndarray) -> list[str]:
    """A digest per image of its exact pixels."""
    return [pixel_digest(image) for image in images]


def count_exact_duplicates(test: Split, train: Split) -> dict:
    """How many test images have a pixel-identical image in ``train``, overall and per class."""
    train_hashes = set(image_hashes(train.images))
    duplicated = np.array([h in train_hashes for h in image_hashes(test.images)], dtype=bool)
    per_class = np.bincount(test.labels[duplicated], minlength=NUM_CLASSES)
    return {"test_images": len(test), "with_duplicate_in_training": int(duplicated.sum()),
            "fraction": float(duplicated.mean()) if len(test) else 0.0, "per_class": per_class.tolist()}


def leaky_split(dataset: FerDataset, seed: int, test_fraction: float = 0.1,
                validation_fraction: float = 0.1) -> FerDataset:
    """The paper's protocol: pool every split, RandomOverSampler on the pool, then a random split.

    Returns a dataset whose Training / PublicTest / PrivateTest are the leaky
    train / validation / test parts.
    """
    from imblearn.over_sampling import RandomOverSampler

    pooled = [dataset.split(name) for name in ("Training", "PublicTest", "PrivateTest")]
    images = np.concatenate([s.images for s in pooled])
    labels = np.concatenate([s.labels for s in pooled])
    ids = sum((s.ids for s in pooled), ())
    resampled, _ = RandomOverSampler(random_state=seed).fit_resample(np.arange(len(labels)).reshape(-1, 1), labels)
    order = np.random.default_rng(seed).permutation(resampled[:, 0])
    n_test = int(round(test_fraction * len(order)))
    n_validation = int(round(validation_fraction * len(order)))
    parts = {"PrivateTest": order[:n_test], "PublicTest": order[n_test:n_test + n_validation],
             "Training": order[n_test + n_validation:]}
    pooled_split = Split(images, labels, ids)
    return FerDataset(f"{dataset.source} (oversampled before split)",
                      {name: pooled_split.subset(index) for name, index in parts.items()})


def audit(dataset: FerDataset, *, seed: int = 0, model: str = "cnn", epochs: int = 0,
          work_dir: str | Path = "runs/audit") -> dict:
    """Duplicate counts under both protocols; with ``epochs > 0`` also the accuracy of ``model`` under each."""
    from lab.keras_io import load_keras_model
    from train.evaluate import evaluate

    leaky = leaky_split(dataset, seed)
    result = {"seed": seed, "protocols": {}}
    protocols = (("paper (oversample, then split)", leaky), ("honest (split, then oversample Training)", dataset))
    for protocol, data in protocols:
        test, train = data.split("PrivateTest"), data.split("Training")
        entry = {"train_images": len(train), "test_images": len(test), "test_class_counts": test.class_counts(),
                 "duplicates": count_exact_duplicates(test, train)}
        if epochs > 0:
            from train.fit import FitConfig, fit

            balance = "none" if data is leaky else "oversample"  # the leaky pool is already balanced
            run_dir = Path(work_dir) / ("paper" if data is leaky else "honest")
            # Both protocols get the same budget; the leaky split's test images are copies of training images, which
            # the split-consistency checks are not meant to judge.
            config = FitConfig(model=model, epochs=epochs, seed=seed, balance=balance, ignore_data_checks=True)
            fit(data, run_dir, config, resume=True, verbose=2)
            report = evaluate(load_keras_model(run_dir / "best.keras"), data, "PrivateTest")
            entry.update(model=model, epochs=epochs, accuracy=report["accuracy"], macro_f1=report["macro"]["f1"],
                         per_class_f1={k: v["f1"] for k, v in report["per_class"].items()})
        result["protocols"][protocol] = entry
        log.info("%s: %d of %d test images have an exact duplicate in training%s", protocol,
                 entry["duplicates"]["with_duplicate_in_training"], len(test),
                 f"; accuracy {entry['accuracy']:.4f}" if "accuracy" in entry else "")
    return result


def audit_markdown(result: dict) -> str:
    """The audit as a Markdown table."""
    lines = ["| protocol | train images | test images | test images with an exact duplicate in training | "
             "accuracy | macro-F1 | disgust F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for protocol, entry in result["protocols"].items():
        duplicates = entry["duplicates"]
        accuracy = f"{entry['accuracy']:.4f}" if "accuracy" in entry else "-"
        macro_f1 = f"{entry['macro_f1']:.4f}" if "macro_f1" in entry else "-"
        disgust = f"{entry['per_class_f1']['disgust']:.3f}" if "per_class_f1" in entry else "-"
        lines.append(f"| {protocol} | {entry['train_images']} | {entry['test_images']} | "
                     f"{duplicates['with_duplicate_in_training']} ({duplicates['fraction']:.1%}) | {accuracy} "
                     f"| {macro_f1} | {disgust} |")
    return "\n".join(lines)
