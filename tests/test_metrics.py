"""The numpy metrics agree with scikit-learn on real-shaped random predictions."""

import numpy as np
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion

from lab.metrics import classification_report, confidence_summary


def test_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 7, 500)
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.integers(0, 7, 500))
    y_pred[y_pred == 1] = 2  # class 1 never predicted: precision must be 0, not NaN
    ours = classification_report(y_true, y_pred)
    theirs = sk_report(y_true, y_pred, labels=range(7), output_dict=True, zero_division=0)
    assert ours["accuracy"] == theirs["accuracy"]
    for index, name in enumerate(ours["labels"]):
        for key in ("precision", "recall", "f1"):
            assert abs(ours["per_class"][name][key] - theirs[str(index)][key if key != "f1" else "f1-score"]) < 1e-12
        assert ours["per_class"][name]["support"] == theirs[str(index)]["support"]
    assert abs(ours["macro"]["f1"] - theirs["macro avg"]["f1-score"]) < 1e-12
    assert abs(ours["weighted"]["f1"] - theirs["weighted avg"]["f1-score"]) < 1e-12
    assert ours["confusion_matrix"] == sk_confusion(y_true, y_pred, labels=range(7)).tolist()


def test_confidence_summary_separates_calibrated_from_overconfident():
    """Predictions right exactly as often as they claim have an ECE near 0; the same predictions claiming 0.95 have
    an ECE near 0.95 - 0.6, and the share below the low-confidence line follows the top probabilities."""
    rng = np.random.default_rng(5)
    count, claimed = 20_000, 0.6
    y_true = rng.integers(0, 7, count)
    right = rng.random(count) < claimed
    y_pred = np.where(right, y_true, (y_true + rng.integers(1, 7, count)) % 7)

    def probabilities(top: float) -> np.ndarray:
        rows = np.full((count, 7), (1 - top) / 6)
        rows[np.arange(count), y_pred] = top
        return rows

    calibrated = confidence_summary(y_true, probabilities(claimed), low=0.4)
    overconfident = confidence_summary(y_true, probabilities(0.95), low=0.4)
    assert calibrated["ece"] < 0.02
    assert abs(overconfident["ece"] - (0.95 - right.mean())) < 1e-9
    assert abs(calibrated["mean_top"] - 0.6) < 1e-12 and calibrated["share_below_low"] == 0.0
    assert confidence_summary(y_true, probabilities(0.35), low=0.4)["share_below_low"] == 1.0
    assert overconfident["nll"] > calibrated["nll"]
