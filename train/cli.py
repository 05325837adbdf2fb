"""``fer-train``: fit, evaluate, compare and audit the seed paper's models on FER2013."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Optional

import typer

from edge_runtime.core.cli_support import require_extra, run_cli, version_option
from edge_runtime.core.errors import FerError
from lab.data import SPLITS
from train.augment import AugmentConfig
from train.fit import BALANCE_MODES, SCHEDULES
from train.runs import FitConfig
from train.paper import MODEL_NAMES

# Each option's default is defined once, in FitConfig and AugmentConfig (what state.json records).
FIT, AUGMENT = FitConfig(), AugmentConfig()

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate the seed paper's CNN / CNN+LSTM models on FER2013 (honest protocol).")
log = logging.getLogger("fer-train")

DATA_HELP = "FER2013: fer2013.csv, or the image-folder root with train/ and test/ (default: $FER2013_DIR)"


@app.callback()
def _group(version: bool = version_option("fer-train")) -> None:
    """Train and evaluate the seed paper's CNN / CNN+LSTM models on FER2013 (honest protocol)."""


@app.command("fit")
def fit_command(
    model: Literal[MODEL_NAMES] = typer.Option(FIT.model, help="cnn (Model 1), cnn_lstm_small (Model 2) or cnn_lstm "
                                               "(Model 3)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, help="run folder for checkpoints and logs (default runs/<model>)"),
    epochs: int = typer.Option(FIT.epochs, help="maximum number of epochs"),
    batch_size: int = typer.Option(FIT.batch_size, help="batch size"),
    learning_rate: float = typer.Option(FIT.learning_rate, help="Adam learning rate"),
    balance: Literal[BALANCE_MODES] = typer.Option(FIT.balance, help="oversample (RandomOverSampler on Training only, to equal classes), "
                                "soft-oversample (each class to sqrt(count x largest)), class-weight or none"),
    patience: int = typer.Option(FIT.patience, help="early stop after this many epochs without PublicTest improvement"),
    schedule: Literal[SCHEDULES] = typer.Option(FIT.schedule, help="plateau (halve the rate after 5 flat epochs) or cosine "
                                 "(warm-up, then cosine decay to 1e-5 at --epochs)"),
    warmup_epochs: int = typer.Option(FIT.warmup_epochs, help="epochs of linear warm-up from a tenth of the rate (cosine only)"),
    weight_decay: float = typer.Option(FIT.weight_decay, help="AdamW decoupled weight decay (0 = plain Adam)"),
    label_smoothing: float = typer.Option(FIT.label_smoothing, help="label smoothing of the cross-entropy loss"),
    rotation: float = typer.Option(AUGMENT.rotation_deg, help="augmentation: maximum rotation in degrees"),
    zoom: float = typer.Option(AUGMENT.zoom, help="augmentation: maximum zoom, +- fraction"),
    shift: float = typer.Option(AUGMENT.shift, help="augmentation: maximum shift, fraction of the side"),
    brightness: float = typer.Option(AUGMENT.brightness, help="augmentation: maximum brightness offset, fraction of 255"),
    contrast: float = typer.Option(AUGMENT.contrast, help="augmentation: maximum contrast change, +- fraction"),
    erase: float = typer.Option(AUGMENT.erase_probability, help="augmentation: probability of random erasing (one noise rectangle)"),
    blur: float = typer.Option(AUGMENT.blur, help="augmentation: largest Gaussian blur sigma in pixels (at 48x48), applied "
                               "to half the images (0 = off)"),
    seed: int = typer.Option(FIT.seed, help="random seed (data order, augmentation, weights)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    stop_after: Optional[int] = typer.Option(None, help="pause after this many epochs in all (continue later with "
                                             "--resume; the schedule still spans --epochs)"),
    limit: Optional[int] = typer.Option(None, help="use at most this many images per split (quick runs)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows/images and report how many"),
    jit: bool = typer.Option(False, "--jit", help="compile with XLA (slower on small CPUs, faster on GPUs)"),
    ignore_data_checks: bool = typer.Option(False, "--ignore-data-checks",
                                            help="train even if the splits look inconsistent (findings are recorded)"),
    init_weights: Optional[str] = typer.Option(None, help="start from the weights of this .keras model (matched by layer name)"),
    quantization_aware: Optional[str] = typer.Option(
        None, help="fine-tune the int8-simulating copy of this trained float .keras model (quantization-aware "
        "training; --model comes from that model); use a small --learning-rate (2e-5 for the "
        "shipped model)"),
    calibration_dir: Path = typer.Option(Path(FIT.calibration_dir), help="with --quantization-aware: the folder whose "
                                         "manifest.csv names the calibration images (fer-convert's)"),
    cell_range: float = typer.Option(FIT.cell_range, help="with --quantization-aware: cap the LSTM cell "
                                     "state's int8 range at +-this, as fer-convert does (0: min/max)"),
    teacher: Optional[list[Path]] = typer.Option(None, "--teacher", help="distil from this teacher: a run folder "
                                                 "(its best.keras) or a .keras file; repeat for an ensemble"),
    distill_alpha: float = typer.Option(FIT.distill_alpha, help="with --teacher: weight of the teachers' soft targets (0..1) "
                                        "against the hard labels"),
    distill_temperature: float = typer.Option(FIT.distill_temperature, help="with --teacher: temperature that softens the teachers' "
                                              "probabilities"),
    teacher_cache: Path = typer.Option(Path(FIT.teacher_cache), help="with --teacher: where the teachers' "
                                       "predictions on each epoch's augmented batches are kept (reused by runs "
                                       "with the same data, seed and augmentation)"),
) -> None:
    """Train a model on Training, selecting the checkpoint on PublicTest (optionally distilling from teachers)."""
    require_extra("train")
    from lab.data import load_fer2013
    from train.distill import teacher_file
    from train.fit import fit

    config = FitConfig(model=model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       balance=balance, seed=seed, patience=patience, jit_compile=jit, schedule=schedule,
                       warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing,
                       augment=AugmentConfig(rotation_deg=rotation, zoom=zoom, shift=shift, brightness=brightness,
                                             contrast=contrast, erase_probability=erase, blur=blur),
                       ignore_data_checks=ignore_data_checks,
                       init_weights=init_weights or "", quantization_aware=quantization_aware or "",
                       calibration_dir=str(calibration_dir), cell_range=cell_range,
                       teachers=tuple(str(teacher_file(t)) for t in teacher or ()), distill_alpha=distill_alpha,
                       distill_temperature=distill_temperature, teacher_cache=str(teacher_cache))
    dataset = load_fer2013(data, skip_bad=skip_bad, limit_per_split=limit, seed=seed)
    default_out = Path("runs") / (f"{Path(quantization_aware).stem}_qat" if quantization_aware else model)
    state = fit(dataset, out or default_out, config, resume=resume, stop_after=stop_after)
    log.info("done: %d epochs, best PublicTest accuracy %.4f at epoch %d", state.epochs_done,
             state.best_val_accuracy, state.best_epoch)


@app.command("check-data")
def check_data_command(
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows/images and report how many"),
) -> None:
    """Compare the splits (counts, pixel statistics, sharpness) and report problems; exit 1 when any is found."""
    import json

    from lab.data import load_fer2013
    from train.data_checks import check_dataset

    statistics, findings = check_dataset(load_fer2013(data, skip_bad=skip_bad))
    typer.echo(json.dumps({"statistics": statistics, "findings": [f._asdict() for f in findings]}, indent=2))
    if findings:
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate_command(
    model: Path = typer.Argument(..., help="a .keras model written by fer-train"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    split: Literal[SPLITS] = typer.Option("PrivateTest", help="Training, PublicTest or PrivateTest"),
    out: Optional[Path] = typer.Option(None, help="report folder (default reports/<model file stem>)"),
    history: Optional[Path] = typer.Option(None, help="history.csv of the run, for the learning-curve plot"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows/images and report how many"),
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrices and learning curves, as JSON, Markdown and PNG."""
    require_extra("train")
    from lab.data import load_fer2013
    from train.evaluate import evaluate, write_report
    from lab.keras_io import load_keras_model
    from train.runs import read_history, run_epochs

    keras_model = load_keras_model(model)
    report = evaluate(keras_model, load_fer2013(data, skip_bad=skip_bad), split)
    curves = read_history(history.parent) if history else None
    write_report(report, out or Path("reports") / model.stem, f"{keras_model.name} ({model.name})", curves,
                 {"model": keras_model.name, "parameters": int(keras_model.count_params()), **run_epochs(model)})


@app.command("export")
def export_command(
    run: Path = typer.Argument(..., help="run folder written by `fer-train fit` (holds best.keras, state.json)"),
    to: Path = typer.Option(Path("models/fer_cnn_lstm.keras"), help="where the shipped .keras file goes"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    report: Optional[Path] = typer.Option(None, help="report folder (default reports/<destination stem>)"),
) -> None:
    """Ship a run's best checkpoint with its PrivateTest metrics JSON (command, commit, epochs, wall time)."""
    require_extra("train")
    from lab.data import load_fer2013
    from train.export import export_run

    summary = export_run(run, to, load_fer2013(data), report or Path("reports") / to.stem)
    log.info("shipped %s: PrivateTest accuracy %.4f, macro-F1 %.4f", to, summary["PrivateTest"]["accuracy"],
             summary["PrivateTest"]["macro"]["f1"])


@app.command("compare")
def compare_command(
    metrics: list[Path] = typer.Argument(..., help="metrics JSON files (models/*.metrics.json or reports/*/metrics.json)"),
) -> None:
    """Print the paper's Table 8 layout (one row per model) with honest PrivateTest numbers, as Markdown."""
    from train.evaluate import comparison_table

    missing = [str(m) for m in metrics if not m.is_file()]
    if missing:
        raise FerError(f"metrics file(s) not found: {', '.join(missing)}; run `fer-train export` or `evaluate` first")
    typer.echo(comparison_table(metrics))


@app.command("audit-leakage")
def audit_command(
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    model: Literal[MODEL_NAMES] = typer.Option("cnn", help="model trained under both protocols (cnn is the cheapest)"),
    epochs: int = typer.Option(0, help="epochs per protocol; 0 counts duplicates only"),
    seed: int = typer.Option(0, help="random seed"),
    out: Path = typer.Option(Path("reports/leakage"), help="report folder (audit.json, audit.md)"),
    limit: Optional[int] = typer.Option(None, help="use at most this many images per split (quick runs)"),
) -> None:
    """Reproduce the paper's oversample-then-split protocol next to the honest one and count leaked test images."""
    require_extra("train")
    from lab.data import load_fer2013
    from train.leakage import audit, audit_markdown
    from lab.provenance import provenance, write_json

    started = provenance()  # the code as it was when the audit began (the tree may change while it runs)
    result = audit(load_fer2013(data, limit_per_split=limit, seed=seed), seed=seed, model=model, epochs=epochs,
                   work_dir=Path("runs") / "audit")
    result["provenance"] = started
    write_json(out / "audit.json", result)
    table = audit_markdown(result)
    (out / "audit.md").write_text("# Leakage audit\n\n" + table + "\n")
    typer.echo(table)


def main() -> None:
    """Console-script entry point."""
    run_cli(app)


if __name__ == "__main__":
    main()
