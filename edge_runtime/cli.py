"""``edge-runtime``: run the emotion pipeline on a camera, video, image or folder; validate configs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edge_runtime.core.cli_support import run_cli

log = logging.getLogger("edge-runtime")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Facial expression recognition on the device: frames in, one JSON line per face out.")


@app.command("run")
def run_command(
    model: Optional[str] = typer.Option(None, help="converted .tflite model (default: model.path in the config)"),
    source: Optional[str] = typer.Option(None, help="image, folder, video, camera index, /dev/videoN, URL or picamera2"),
    config: Optional[Path] = typer.Option(None, help="TOML config file (CLI options override it)"),
    threads: Optional[int] = typer.Option(None, help="interpreter and OpenCV threads"),
    backend: Optional[str] = typer.Option(None, help="cpu or edgetpu"),
    tta: Optional[str] = typer.Option(None, help="test-time augmentation: none or flip (classify the mirrored face "
                                      "too and average; two invokes per face)"),
    detector: Optional[str] = typer.Option(None, help="blazeface (default, bundled), haar or yunet"),
    every_n: Optional[int] = typer.Option(None, help="detect every Nth frame, reuse boxes between"),
    min_face: Optional[int] = typer.Option(None, help="smallest face side in pixels"),
    max_faces: Optional[int] = typer.Option(None, help="0 = all faces, 1 = largest only"),
    alpha: Optional[float] = typer.Option(None, help="smoothing weight of the newest frame (1 = none)"),
    threshold: Optional[float] = typer.Option(None, help="below this smoothed probability the label is 'uncertain'"),
    annotate: Optional[str] = typer.Option(None, help="write annotated frames here (video file, or a folder for images)"),
    max_frames: Optional[int] = typer.Option(None, help="stop after this many frames"),
    loop: Optional[bool] = typer.Option(None, "--loop/--no-loop", help="replay a video file endlessly"),
    http: Optional[str] = typer.Option(None, help="serve /healthz and /metrics on HOST:PORT (e.g. 127.0.0.1:9108)"),
    jsonl: Optional[str] = typer.Option(None, help="also append events to this size-rotated JSONL file"),
    mqtt_host: Optional[str] = typer.Option(None, help="also publish events to this MQTT broker"),
    mqtt_port: Optional[int] = typer.Option(None, help="MQTT broker port"),
    mqtt_topic: Optional[str] = typer.Option(None, help="MQTT topic"),
    no_stdout: bool = typer.Option(False, "--no-stdout", help="do not write events to stdout"),
) -> None:
    """Run the pipeline and write one JSON line per detected face per processed frame to stdout."""
    from edge_runtime.config import Config, load_config, with_overrides
    from edge_runtime.service import Service

    base = load_config(config) if config else Config()
    settings = with_overrides(base, {
        "model.path": model, "model.threads": threads, "model.backend": backend, "model.tta": tta,
        "source.spec": source,
        "source.max_frames": max_frames, "source.loop": loop, "detector.name": detector, "detector.every_n": every_n,
        "detector.min_face": min_face, "detector.max_faces": max_faces, "smoothing.alpha": alpha,
        "smoothing.threshold": threshold, "output.annotate": annotate, "http.listen": http, "sinks.file": jsonl,
        "sinks.stdout": False if no_stdout else None, "mqtt.host": mqtt_host, "mqtt.port": mqtt_port,
        "mqtt.topic": mqtt_topic})
    raise typer.Exit(Service(settings).run())


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
