"""Shipping a training run: its best checkpoint, evaluated once on PrivateTest, with everything that made it."""

from __future__ import annotations

import shutil
from pathlib import Path

from edge_runtime.core.errors import ModelError
from lab.data import FerDataset
from lab.keras_io import load_keras_model
from lab.provenance import file_sha256, provenance, write_json
from train.evaluate import evaluate, write_report
from train.paper import PAPER_NAMES
from train.runs import RunState, epoch_summary, read_history
from train.temperature import temperature_scale


def export_run(run_dir: str | Path, destination: str | Path, dataset: FerDataset, report_dir: str | Path,
               temperature_tta: str | None = None) -> dict:
    """Ship a run's best checkpoint: copy it, evaluate it on PrivateTest, write ``<dest>.metrics.json`` and a report.

    With ``temperature_tta`` ("flip" or "none"), the copy is first temperature-scaled on PublicTest for the runtime
    reading faces with that ``model.tta`` (:mod:`train.temperature`; its record goes in the metrics too)."""
    started = provenance()  # the code as it was when the export began
    run_dir, destination = Path(run_dir), Path(destination)
    state_file, best = run_dir / "state.json", run_dir / "best.keras"
    if not state_file.exists() or not best.exists():
        raise ModelError(f"{run_dir} holds no finished epoch (state.json and best.keras); run `fer-train fit` first")
    state = RunState.read(run_dir)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if temperature_tta:
        scaling = temperature_scale(best, destination, dataset, flip=temperature_tta == "flip")
    else:
        scaling = None
        shutil.copyfile(best, destination)
    model = load_keras_model(destination)
    private = evaluate(model, dataset, "PrivateTest")
    public = evaluate(model, dataset, "PublicTest")
    name = state.config.model
    float_parent = state.config.quantization_aware
    summary = {
        "model": name,
        "paper_name": PAPER_NAMES.get(name, name) + (", quantization-aware" if float_parent else ""),
        "parameters": int(model.count_params()),
        "file": destination.name,
        "sha256": file_sha256(destination),
        "training": {
            **_origin(state),
            **epoch_summary(state),
            "stopped_early": state.stopped_early,
            # best.keras may be the weight average of epochs average_from..best_epoch (fer-train fit --average-from)
            "best_is_weight_average": state.best_is_average,
            "averaged_epochs": state.best_epoch - state.config.average_from + 1 if state.best_is_average else 0,
            "wall_seconds": state.wall_seconds,
            "config": state.config.to_json(),
            "train_images": state.train_images,
            "train_class_counts": list(state.train_class_counts),
        },
        "warm_start": _warm_start(state.config.init_weights),
        # The float model a quantization-aware run fine-tuned; fer-convert compares the int8 model with it too.
        "quantization_aware_from": ({"file": float_parent, "sha256": file_sha256(float_parent)}
                                    if float_parent and Path(float_parent).is_file() else None),
        "temperature_scaling": scaling,
        "PublicTest": {"accuracy": public["accuracy"], "macro_f1": public["macro"]["f1"]},
        "PrivateTest": private,
        "provenance": started,
    }
    write_json(destination.with_suffix(".metrics.json"), summary)
    write_report(private, report_dir, f"{summary['paper_name']} ({destination.name})", read_history(run_dir),
                 {"model": name, "parameters": summary["parameters"], **epoch_summary(state)})
    return summary


def _warm_start(init_weights: str) -> dict | None:
    """Provenance of the run a warm-started run began from (its state.json sits next to the weights)."""
    if not init_weights:
        return None
    state_file = Path(init_weights).parent / "state.json"
    if not state_file.exists():
        return {"weights": init_weights, "note": "no state.json beside the weights: origin unknown"}
    state = RunState.read(state_file.parent)
    return {"weights": init_weights, "epochs_run": state.epochs_done, "wall_seconds": state.wall_seconds,
            **_origin(state), "config": state.config.to_json()}


def _origin(state: RunState) -> dict:
    """The commands that ran a training run (one per start or resume) and the commits they ran at."""
    return {"commands": [p["command"] for p in state.provenance],
            "git_commits": [p["git_commit"] for p in state.provenance]}
