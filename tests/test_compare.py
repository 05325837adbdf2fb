"""`fer-train compare`: the paper's Table 8 layout from the metrics files that export and evaluate write."""

import json

import numpy as np
import pytest

from edge_runtime.core.errors import FerError
from lab.metrics import classification_report
from train.evaluate import comparison_table
from train.runs import FitConfig, RunState, run_epochs


def _results(split: str) -> dict:
    labels = np.arange(70) % 7
    predictions = labels.copy()
    predictions[:10] = (predictions[:10] + 1) % 7  # 60 of 70 right
    return {**classification_report(labels, predictions), "split": split}


def test_rows_from_export_and_evaluate_metrics(tmp_path):
    exported = tmp_path / "fer_cnn.metrics.json"
    exported.write_text(json.dumps({"model": "cnn", "paper_name": "Model 1 (CNN)", "parameters": 117031,
                                    "training": {"epochs_run": 55, "best_epoch": 51},
                                    "PrivateTest": _results("PrivateTest")}))
    # What `fer-train evaluate` writes for a checkpoint inside a run folder (run_epochs reads its state.json).
    run = tmp_path / "run"
    run.mkdir()
    RunState(config=FitConfig(model="cnn"), data_source="fer2013", train_images=420, validation_images=140,
             train_class_counts=(60,) * 7, epochs_done=3, best_epoch=2).write(run)
    evaluated = tmp_path / "metrics.json"
    evaluated.write_text(json.dumps({"title": "cnn (best.keras)", "model": "cnn", "parameters": 117031,
                                     **run_epochs(run / "best.keras"), "results": _results("PrivateTest")}))
    rows = comparison_table([exported, evaluated]).splitlines()[2:]
    macro_f1 = _results("PrivateTest")["macro"]["f1"]
    assert rows[0].startswith("| Model 1 (CNN) | 117,031 | 55 (51) | 0.8571 |")
    assert rows[1].startswith("| Model 1 (CNN) | 117,031 | 3 (2) | 0.8571 |")
    assert all(row.split(" | ")[6] == f"{macro_f1:.4f}" for row in rows)
    assert run_epochs(tmp_path / "elsewhere" / "model.keras") == {}


def test_refuses_other_splits_and_files_without_results(tmp_path):
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"model": "cnn", "results": _results("PublicTest")}))
    with pytest.raises(FerError, match="holds PublicTest results"):
        comparison_table([public])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"model": "cnn"}))
    with pytest.raises(FerError, match="holds no evaluation results"):
        comparison_table([empty])
