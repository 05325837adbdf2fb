"""``edge-runtime``: run the emotion pipeline on a camera, video, image or folder; validate configs."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Literal, Optional

import typer

from edge_runtime.config import schema_field
from edge_runtime.core.cli_support import run_cli, version_option

log = logging.getLogger("edge-runtime")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Facial expression recognition on the device: frames in, one JSON line per face out.")


@app.callback()
def _global_options(version: bool = version_option("edge-runtime")) -> None:
    """Facial expression recognition on the device: frames in, one JSON line per face out."""


# Each option of `run` sets one config key; its type, choices and help come from the schema (edge_runtime.config).
RUN_OPTIONS: dict[str, str] = {
    "model": "model.path", "source": "source.spec", "threads": "model.threads", "backend": "model.backend",
    "tta": "model.tta", "detector": "detector.name", "every_n": "detector.every_n", "min_face": "detector.min_face",
    "max_faces": "detector.max_faces", "time_constant": "smoothing.time_constant_s", "dwell": "smoothing.dwell_s",
    "threshold": "smoothing.threshold", "annotate": "output.annotate", "output_mode": "output.mode",
    "max_frames": "source.max_frames", "loop": "source.loop", "realtime": "source.realtime",
    "newest_frame": "source.newest_frame", "http": "http.listen",
    "preview": "http.preview",
    "jsonl": "sinks.file", "stdout": "sinks.stdout", "mqtt_host": "mqtt.host", "mqtt_port": "mqtt.port",
    "mqtt_topic": "mqtt.topic", "mqtt_spool": "mqtt.spool_file",
}


def _schema_option(name: str, path: str) -> inspect.Parameter:
    """A typer option for config key ``path``: unset (None) unless given, so the config file's value stands."""
    setting = schema_field(path)
    flag = "--" + name.replace("_", "-")
    help_text = f"{setting.doc} (config: {path})"
    if setting.type is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
        annotation = Optional[bool]
    else:
        option = typer.Option(None, flag, help=help_text, show_default=False)
        annotation = Optional[Literal[setting.choices]] if setting.choices else Optional[setting.type]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def run_command(config: Optional[Path] = None, **options) -> None:
    """Run the pipeline and write one JSON line per detected face per processed frame to stdout."""
    from edge_runtime.config import Config, load_config, preflight, with_overrides
    from edge_runtime.native_log import native_output_to_log
    from edge_runtime.service import Service, StopRequest

    stop_requested = StopRequest()  # from here on a SIGTERM ends the process cleanly, even before the first frame
    base = load_config(config) if config else Config()
    settings = with_overrides(base, {RUN_OPTIONS[name]: value for name, value in options.items()})
    preflight(settings, load_model=False)  # check-config's checks; the runtime loads (and checks) the model next
    with native_output_to_log():
        code = Service(settings).run(stop_requested)
    raise typer.Exit(code)


run_command.__signature__ = inspect.Signature(
    [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                       default=typer.Option(None, help="TOML config file (the options below override it)"))]
    + [_schema_option(name, path) for name, path in RUN_OPTIONS.items()])
app.command("run")(run_command)


@app.command("check-config")
def check_config_command(file: Path = typer.Argument(..., help="TOML config to validate")) -> None:
    """Validate a config file as `run` would (keys, values, listen address, paths, model), without starting anything."""
    from edge_runtime.config import load_config, preflight

    preflight(load_config(file))
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
