"""``fer-train``: fit, evaluate, compare and audit the seed paper's models on FER2013."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from edge_runtime.core.cli_support import require_extra, run_cli, version_option
from edge_runtime.core.errors import FerError
from edge_runtime.core.preprocessing import TTA_MODES
from lab.data import SPLITS
from train.augment import AugmentConfig
from train.fit import BALANCE_MODES, SCHEDULES
from train.paper import MODEL_NAMES
from train.runs import FitConfig

# Each option's default is defined once, in FitConfig and AugmentConfig (what state.json records).
FIT, AUGMENT = FitConfig(), AugmentConfig()

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train and evaluate the seed paper's CNN / CNN+LSTM models on FER2013 (honest protocol).")
log = logging.getLogger("fer-train")

DATA_HELP = "FER2013: fer2013.csv, or the image-folder root with train/ and test/ (default: $FER2013_DIR)"


@app.callback()
def _group(version: bool = version_option("fer-train")) -> None:
    """Train and evaluate the seed paper's CNN / CNN+LSTM models on FER2013 (honest protocol)."""


# The fit options, as types: each names its help once; the defaults come from FitConfig and AugmentConfig.
ModelOption = Annotated[Literal[MODEL_NAMES], typer.Option(
    help="cnn (Model 1), cnn_lstm_small (Model 2), cnn_lstm (Model 3) or teacher_vgg (a larger teacher for "
         "distillation, not in the paper)")]
DataOption = Annotated[Optional[str], typer.Option(help=DATA_HELP)]
OutOption = Annotated[Optional[Path], typer.Option(help="run folder for checkpoints and logs (default runs/<model>)")]
Epochs = Annotated[int, typer.Option(help="maximum number of epochs")]
BatchSize = Annotated[int, typer.Option(help="batch size")]
LearningRate = Annotated[float, typer.Option(help="Adam learning rate")]
Balance = Annotated[Literal[BALANCE_MODES], typer.Option(
    help="oversample (RandomOverSampler on Training only, to equal classes), soft-oversample (each class to "
    "sqrt(count x largest)), class-weight or none")]
Patience = Annotated[int, typer.Option(help="early stop after this many epochs without PublicTest improvement")]
Schedule = Annotated[Literal[SCHEDULES], typer.Option(
    help="plateau (halve the rate after 5 flat epochs) or cosine (warm-up, then cosine decay to 1e-5 at --epochs)")]
WarmupEpochs = Annotated[int, typer.Option(help="epochs of linear warm-up from a tenth of the rate (cosine only)")]
WeightDecay = Annotated[float, typer.Option(help="AdamW decoupled weight decay (0 = plain Adam)")]
LabelSmoothing = Annotated[float, typer.Option(help="label smoothing of the cross-entropy loss")]
Rotation = Annotated[float, typer.Option(help="augmentation: maximum rotation in degrees")]
Zoom = Annotated[float, typer.Option(help="augmentation: maximum zoom, +- fraction")]
Shift = Annotated[float, typer.Option(help="augmentation: maximum shift, fraction of the side")]
Brightness = Annotated[float, typer.Option(help="augmentation: maximum brightness offset, fraction of 255")]
Contrast = Annotated[float, typer.Option(help="augmentation: maximum contrast change, +- fraction")]
Erase = Annotated[float, typer.Option(help="augmentation: probability of random erasing (one noise rectangle)")]
Blur = Annotated[float, typer.Option(
    help="augmentation: largest Gaussian blur sigma in pixels (at 48x48), applied to half the images (0 = off)")]
Mixup = Annotated[float, typer.Option(
    help="augmentation: mixup, each image blended with another by a Beta(x, x) weight, labels alike (0 = off)")]
Seed = Annotated[int, typer.Option(help="random seed (data order, augmentation, weights)")]
Resume = Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")]
StopAfter = Annotated[Optional[int], typer.Option(
    help="pause after this many epochs in all (continue later with --resume; the schedule still spans --epochs)")]
Limit = Annotated[Optional[int], typer.Option(help="use at most this many images per split (quick runs)")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="skip malformed rows/images and report how many")]
Jit = Annotated[bool, typer.Option("--jit", help="compile with XLA (slower on small CPUs, faster on GPUs)")]
IgnoreDataChecks = Annotated[bool, typer.Option(
    "--ignore-data-checks", help="train even if the splits look inconsistent (findings are recorded)")]
InitWeights = Annotated[Optional[str], typer.Option(
    help="start from the weights of this .keras model (matched by layer name)")]
QuantizationAware = Annotated[Optional[str], typer.Option(
    help="fine-tune the int8-simulating copy of this trained float .keras model (quantization-aware training; "
    "--model comes from that model); use a small --learning-rate (2e-5 for the shipped model)")]
CalibrationDir = Annotated[Path, typer.Option(
    help="with --quantization-aware: the folder whose manifest.csv names the calibration images (fer-convert's)")]
CellRange = Annotated[float, typer.Option(
    help="with --quantization-aware: cap the LSTM cell state's int8 range at +-this, as fer-convert does (0: min/max)")]
Teachers = Annotated[Optional[list[Path]], typer.Option(
    "--teacher",
    help="distil from this teacher: a run folder (its best.keras) or a .keras file; repeat for an ensemble")]
DistillAlpha = Annotated[float, typer.Option(
    help="with --teacher: weight of the teachers' soft targets (0..1) against the hard labels")]
DistillTemperature = Annotated[float, typer.Option(
    help="with --teacher: temperature that softens the teachers' probabilities")]
TeacherCache = Annotated[Path, typer.Option(
    help="with --teacher: where the teachers' predictions on each epoch's augmented batches are kept (reused by "
    "runs with the same data, seed and augmentation)")]

TemperatureTta = Literal[TTA_MODES]  # the runtime's model.tta modes

AverageFrom = Annotated[int, typer.Option(
    help="stochastic weight averaging: average the weights of every epoch from this one on; the average competes "
    "for best.keras (0 = off)")]
AverageNorm = Annotated[str, typer.Option(
    help="with --average-from: the average's batch-norm statistics: moving (the mean of the epochs' own) or "
    "refresh (measured again on clean Training images)")]
FlipPairs = Annotated[bool, typer.Option(
    "--flip-pairs", help="flip-aware training: each image beside its mirror, the loss on their mean probability (what "
    "flip TTA reads); each step costs about twice as much")]


@app.command("fit")
def fit_command(
    model: ModelOption = FIT.model, data: DataOption = None, out: OutOption = None, epochs: Epochs = FIT.epochs,
    batch_size: BatchSize = FIT.batch_size, learning_rate: LearningRate = FIT.learning_rate,
    balance: Balance = FIT.balance, patience: Patience = FIT.patience, schedule: Schedule = FIT.schedule,
    warmup_epochs: WarmupEpochs = FIT.warmup_epochs, weight_decay: WeightDecay = FIT.weight_decay,
    label_smoothing: LabelSmoothing = FIT.label_smoothing, rotation: Rotation = AUGMENT.rotation_deg,
    zoom: Zoom = AUGMENT.zoom, shift: Shift = AUGMENT.shift, brightness: Brightness = AUGMENT.brightness,
    contrast: Contrast = AUGMENT.contrast, erase: Erase = AUGMENT.erase_probability, blur: Blur = AUGMENT.blur,
    mixup: Mixup = AUGMENT.mixup,
    seed: Seed = FIT.seed, resume: Resume = False, stop_after: StopAfter = None, limit: Limit = None,
    skip_bad: SkipBad = False, jit: Jit = False, ignore_data_checks: IgnoreDataChecks = False,
    init_weights: InitWeights = None, quantization_aware: QuantizationAware = None,
    calibration_dir: CalibrationDir = Path(FIT.calibration_dir), cell_range: CellRange = FIT.cell_range,
    teacher: Teachers = None, distill_alpha: DistillAlpha = FIT.distill_alpha,
    distill_temperature: DistillTemperature = FIT.distill_temperature,
    teacher_cache: TeacherCache = Path(FIT.teacher_cache), average_from: AverageFrom = FIT.average_from,
    average_norm: AverageNorm = FIT.average_norm, flip_pairs: FlipPairs = FIT.flip_pairs,
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
                                             contrast=contrast, erase_probability=erase, blur=blur,
                                             mixup=mixup),
                       ignore_data_checks=ignore_data_checks,
                       init_weights=init_weights or "", quantization_aware=quantization_aware or "",
                       calibration_dir=str(calibration_dir), cell_range=cell_range,
                       teachers=tuple(str(teacher_file(t)) for t in teacher or ()), distill_alpha=distill_alpha,
                       distill_temperature=distill_temperature, teacher_cache=str(teacher_cache),
                       average_from=average_from, average_norm=average_norm, flip_pairs=flip_pairs)
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
    from lab.keras_io import load_keras_model
    from train.evaluate import evaluate, write_report
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
    temperature: Optional[TemperatureTta] = typer.Option(
        None, help="first temperature-scale the model on PublicTest (as `fer-train temperature`) for the runtime "
                   "reading faces with this model.tta (flip or none); for students, whose probabilities are flatter"),
) -> None:
    """Ship a run's best checkpoint with its PrivateTest metrics JSON (command, commit, epochs, wall time)."""
    require_extra("train")
    from lab.data import load_fer2013
    from train.export import export_run

    summary = export_run(run, to, load_fer2013(data), report or Path("reports") / to.stem, temperature)
    log.info("shipped %s: PrivateTest accuracy %.4f, macro-F1 %.4f", to, summary["PrivateTest"]["accuracy"],
             summary["PrivateTest"]["macro"]["f1"])


@app.command("temperature")
def temperature_command(
    model: Path = typer.Argument(..., help="a run folder (its best.keras) or a .keras file"),
    out: Path = typer.Option(..., help="where the temperature-scaled .keras file goes (its record beside it, "
                                       "<name>.temperature.json)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    tta: TemperatureTta = typer.Option(
        "flip", help="fit the probabilities the runtime reads with this model.tta: flip averages each face and its "
                     "mirror image"),
) -> None:
    """Make a model's probabilities calibrated on PublicTest (temperature scaling) without changing a prediction."""
    require_extra("train")
    from lab.data import load_fer2013
    from lab.keras_io import model_of_run
    from train.temperature import temperature_scale

    record = temperature_scale(model_of_run(model), out, load_fer2013(data), flip=tta == "flip")
    log.info("wrote %s: temperature %.3f; mean top probability %.3f -> %.3f, ECE %.3f -> %.3f", out,
             record["temperature"], record["before"]["mean_top"], record["after"]["mean_top"],
             record["before"]["ece"], record["after"]["ece"])


@app.command("compare")
def compare_command(
    metrics: list[Path] = typer.Argument(...,
                                         help="metrics JSON files (models/*.metrics.json or reports/*/metrics.json)"),
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
    from lab.provenance import provenance, write_json
    from train.leakage import audit, audit_markdown

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
