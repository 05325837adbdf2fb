"""``edge-runtime``: run the emotion pipeline on a camera, video, image or folder; validate configs."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from edge_runtime.cli_support import run_cli

log = logging.getLogger("edge-runtime")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Facial expression recognition on the device: frames in, one JSON line per face out.")


def stdout_sink(event: dict) -> None:
    """One JSON line per event on stdout, flushed at once (journald and pipes see it immediately)."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@app.command("run")
def run_command(
    model: Optional[str] = typer.Option(None, help="converted .tflite model (default: model.path in the config)"),
    source: Optional[str] = typer.Option(None, help="image, folder, video, camera index, /dev/videoN, URL or picamera2"),
    config: Optional[Path] = typer.Option(None, help="TOML config file (CLI options override it)"),
    threads: Optional[int] = typer.Option(None, help="interpreter and OpenCV threads"),
    backend: Optional[str] = typer.Option(None, help="cpu or edgetpu"),
    detector: Optional[str] = typer.Option(None, help="haar (default) or yunet"),
    every_n: Optional[int] = typer.Option(None, help="detect every Nth frame, reuse boxes between"),
    min_face: Optional[int] = typer.Option(None, help="smallest face side in pixels"),
    max_faces: Optional[int] = typer.Option(None, help="0 = all faces, 1 = largest only"),
    alpha: Optional[float] = typer.Option(None, help="smoothing weight of the newest frame (1 = none)"),
    threshold: Optional[float] = typer.Option(None, help="below this smoothed probability the label is 'uncertain'"),
    annotate: Optional[str] = typer.Option(None, help="write annotated frames here (video file, or a folder for images)"),
    max_frames: Optional[int] = typer.Option(None, help="stop after this many frames"),
    loop: Optional[bool] = typer.Option(None, "--loop/--no-loop", help="replay a video file endlessly"),
) -> None:
    """Run the pipeline and write one JSON line per detected face per processed frame to stdout."""
    from edge_runtime.config import Config, load_config, with_overrides
    from edge_runtime.pipeline import Runtime

    base = load_config(config) if config else Config()
    settings = with_overrides(base, {
        "model.path": model, "model.threads": threads, "model.backend": backend, "source.spec": source,
        "source.max_frames": max_frames, "source.loop": loop, "detector.name": detector, "detector.every_n": every_n,
        "detector.min_face": min_face, "detector.max_faces": max_faces, "smoothing.alpha": alpha,
        "smoothing.threshold": threshold, "output.annotate": annotate})
    runtime = Runtime.from_config(settings, sinks=[stdout_sink])

    def request_stop(signum, _frame):
        log.info("received %s: stopping after the current frame", signal.Signals(signum).name)
        runtime.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stats = runtime.run()
    log.info("processed %d frames, %d with faces, %d events", stats.frames, stats.frames_with_faces, stats.events)


@app.command("check-config")
def check_config_command(file: Path = typer.Argument(..., help="TOML config to validate")) -> None:
    """Validate a config file without starting anything."""
    from edge_runtime.config import load_config

    load_config(file)
    typer.echo(f"{file}: OK")


@app.command("show-config")
def show_config_command() -> None:
    """Print every setting with its default, allowed values and description (a valid TOML file)."""
    from edge_runtime.config import describe_schema

    typer.echo("\n".join(describe_schema()).lstrip("\n"))


def main() -> None:
    """Console-script entry point."""
    run_cli(app)


if __name__ == "__main__":
    main()
