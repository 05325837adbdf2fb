"""The numpy metrics agree with scikit-learn on real-shaped random predictions."""

import numpy as np
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion

from lab.metrics import classification_report


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
