"""``fer-convert``: Keras -> verified TFLite (float32, float16, dynamic, full-integer int8), and the calibration set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Optional

import typer

from convert.pipeline import ConvertOptions
from convert.quantize import IO_TYPES, QUANTIZE_MODES
from edge_runtime.core.cli_support import require_extra, run_cli, version_option
from lab.data import SPLITS

log = logging.getLogger("fer-convert")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Convert a trained Keras model to TFLite and verify what quantization cost on held-out data.")
calibration_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                              help="The representative (calibration) subset of the Training split.")
DEFAULTS = ConvertOptions()  # each option's default is defined once, in ConvertOptions
DATA_HELP = "FER2013: fer2013.csv or the image-folder root (default: $FER2013_DIR)"


@calibration_app.callback()
def _calibration_group() -> None:
    """Keeps `calibration build` a sub-command while the group has a single command."""


def convert_main(
    model: Path = typer.Argument(..., help="the trained .keras model"),
    version: bool = version_option("fer-convert"),
    quantize: Literal[QUANTIZE_MODES] = typer.Option(DEFAULTS.quantize, help="none (float32), float16, dynamic or "
                                                     "int8 (full integer)"),
    io: Literal[IO_TYPES] = typer.Option(DEFAULTS.io_type, "--io", help="int8 models' input/output type: uint8, int8 "
                                         "or float32"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP + "; builds calibration_data/ and verifies"),
    max_drop: float = typer.Option(DEFAULTS.max_drop_pp, help="fail when accuracy drops more than this many "
                                   "percentage points"),
    min_agreement: float = typer.Option(DEFAULTS.min_agreement * 100, help="fail when top-1 agreement with the Keras "
                                        "model is below this %"),
    split: Literal[SPLITS] = typer.Option(DEFAULTS.split, help="held-out split to verify on"),
    out: Path = typer.Option(DEFAULTS.out_dir, help="folder for the .tflite files and their .json sidecars"),
    report_dir: Path = typer.Option(DEFAULTS.report_dir, help="folder for the Markdown/JSON/HTML reports"),
    calibration_dir: Path = typer.Option(DEFAULTS.calibration_dir, help="calibration set folder"),
    edgetpu: bool = typer.Option(False, "--edgetpu",
                                 help="check Edge TPU compatibility; compile if edgetpu_compiler is installed"),
    no_verify: bool = typer.Option(False, "--no-verify", help="convert without measuring the accuracy drop"),
    no_debug_layers: bool = typer.Option(False, "--no-debug-layers", help="skip the per-layer quantization error"),
    no_edge_graph: bool = typer.Option(False, "--no-edge-graph",
                                       help="convert the Keras graph as is (LSTM via UNPACK/SPLIT)"),
    limit: Optional[int] = typer.Option(None, help="verify on at most this many images (stratified)"),
    name: Optional[str] = typer.Option(None, help="stem of the written files (<name>_int8.tflite, ...; default: "
                                       "the model file's stem)"),
    reference_model: Optional[Path] = typer.Option(
        None, help="also compare every model with this Keras model, reported but not judged (default for a "
        "quantization-aware model: the float model it was fine-tuned from, as its .metrics.json records)"),
    cell_range: float = typer.Option(DEFAULTS.cell_range, help="int8 with LSTMs: cap the cell state's range "
                                     "at +-this (0: plain min/max calibration, as for every other tensor)"),
) -> None:
    """Convert MODEL, verify float vs quantized on held-out data, write reports; exit non-zero over budget."""
    require_extra("train")
    from convert.pipeline import run_conversion

    options = ConvertOptions(quantize=quantize, io_type=io, max_drop_pp=max_drop, min_agreement=min_agreement / 100,
                             split=split, out_dir=out, report_dir=report_dir, calibration_dir=calibration_dir,
                             edgetpu=edgetpu, verify=not no_verify, debug_layers=not no_debug_layers,
                             edge_graph=not no_edge_graph, limit=limit, reference_model=reference_model,
                             name=name, cell_range=cell_range)
    report = run_conversion(model, options, data)
    log.info("wrote %s; report %s", ", ".join(report.outputs.values()), report.report_files["markdown"])


@calibration_app.command("build")
def calibration_build(
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    directory: Path = typer.Option(Path("calibration_data"), "--dir", help="calibration folder (holds manifest.csv)"),
    per_class: int = typer.Option(100, help="images per class when selecting (with --reselect or no manifest)"),
    seed: int = typer.Option(0, help="selection seed"),
    reselect: bool = typer.Option(False, "--reselect",
                                  help="choose a new subset from this dataset and rewrite the manifest"),
) -> None:
    """Materialize the manifest's Training images as PNGs under calibration_data/ from your FER2013 copy."""
    from lab.calibration import build_calibration
    from lab.data import load_fer2013

    calibration = build_calibration(load_fer2013(data), directory, reselect=reselect, per_class=per_class, seed=seed)
    typer.echo(f"{len(calibration.labels)} calibration images in {directory}: {calibration.histogram()}")


def main() -> None:
    """Console-script entry point: ``fer-convert MODEL ...`` or ``fer-convert calibration build ...``."""
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "calibration":
        run_cli(calibration_app, sys.argv[2:], prog_name="fer-convert calibration")
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command()(convert_main)
        run_cli(single)


if __name__ == "__main__":
    main()
