"""Shared command-line plumbing: logging to stderr, and project errors as one line."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

import typer

from edge_runtime.core.errors import FerError


def setup_logging(level: str | int = "INFO") -> None:
    """Log to stderr with timestamps; stdout stays free for results (JSON lines)."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # TensorFlow's C++ start-up chatter hides the lines that matter.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def version_option(program: str):
    """A ``--version`` option for ``program``: prints ``PROGRAM (fer-edge) VERSION`` and exits, before anything else."""

    def show(value: bool) -> None:
        if value:
            from edge_runtime.core.version import __version__

            typer.echo(f"{program} (fer-edge) {__version__}")
            raise typer.Exit()

    return typer.Option(False, "--version", callback=show, is_eager=True, help="print the version and exit")


# Modules only the desktop stages need; each comes with the pip extra that installs it.
EXTRA_OF_MODULE = {"tensorflow": "train", "keras": "train", "imblearn": "train", "sklearn": "train",
                   "matplotlib": "train", "prometheus_client": "service", "paho": "service"}


def _missing_extra_message(extra: str, modules: list[str]) -> str:
    return (f"{os.path.basename(sys.argv[0])} needs the '{extra}' extra, which is not installed (no module "
            f"{', '.join(repr(m) for m in modules)}): pip install 'fer-edge[{extra}]' (from a checkout: "
            f"pip install '.[{extra}]')")


def require_extra(extra: str) -> None:
    """Fail in one line, before any work, when a module of pip extra ``extra`` is not installed."""
    missing = []
    for module, needed_by in EXTRA_OF_MODULE.items():
        if needed_by != extra:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked or broken in sys.modules
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise FerError(_missing_extra_message(extra, missing))


def run_cli(app: typer.Typer, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a typer app on ``args`` (default: the command line); a :class:`FerError` becomes ``error: <message>``
    and exit code 2, with no traceback.

    A module of an uninstalled extra (``fer-train`` on a runtime-only install,
    say) is reported the same way, naming the extra to install.
    """
    setup_logging(os.environ.get("FER_LOG_LEVEL", "INFO"))
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting with it.
        exit_code = app(args=args, prog_name=prog_name, standalone_mode=False)
        if isinstance(exit_code, int) and exit_code:
            sys.exit(exit_code)
    except FerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as error:
        top = (error.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        print(f"error: {_missing_extra_message(EXTRA_OF_MODULE[top], [top])}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:
        # Usage errors (unknown option, missing argument) arrive here in non-standalone mode. Typer vendors its
        # own click, so recognize them by their interface rather than by class.
        if hasattr(error, "show") and isinstance(getattr(error, "exit_code", None), int):
            error.show()
            sys.exit(error.exit_code)
        raise
