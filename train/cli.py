"""``fer-train``: fit, evaluate, compare and audit the seed paper's models on FER2013."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from edge_runtime.cli_support import run_cli

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train and evaluate the seed paper's CNN / CNN+LSTM models on FER2013 (honest protocol).")
log = logging.getLogger("fer-train")

DATA_HELP = "FER2013: fer2013.csv, or the image-folder root with train/ and test/ (default: $FER2013_DIR)"


@app.command("fit")
def fit_command(
    model: str = typer.Option("cnn_lstm", help="cnn (Model 1), cnn_lstm_small (Model 2) or cnn_lstm (Model 3)"),
    data: Optional[str] = typer.Option(None, help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, help="run folder for checkpoints and logs (default runs/<model>)"),
    epochs: int = typer.Option(100, help="maximum number of epochs"),
    batch_size: int = typer.Option(64, help="batch size"),
    learning_rate: float = typer.Option(1e-3, help="Adam learning rate"),
    balance: str = typer.Option("oversample", help="oversample (RandomOverSampler on Training only), class-weight or none"),
    patience: int = typer.Option(15, help="early stop after this many epochs without PublicTest improvement"),
    seed: int = typer.Option(0, help="random seed (data order, augmentation, weights)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    limit: Optional[int] = typer.Option(None, help="use at most this many images per split (quick runs)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip malformed rows/images and report how many"),
    jit: bool = typer.Option(False, "--jit", help="compile with XLA (slower on small CPUs, faster on GPUs)"),
) -> None:
    """Train a model on Training, selecting the checkpoint on PublicTest."""
    from train.data import load_fer2013
    from train.fit import FitConfig, fit

    config = FitConfig(model=model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       balance=balance, seed=seed, patience=patience, jit_compile=jit)
    dataset = load_fer2013(data, skip_bad=skip_bad, limit_per_split=limit, seed=seed)
    state = fit(dataset, out or Path("runs") / model, config, resume=resume)
    log.info("done: %d epochs, best PublicTest accuracy %.4f at epoch %d", state["epochs_done"],
             state["best_val_accuracy"], state["best_epoch"])


def main() -> None:
    """Console-script entry point."""
    run_cli(app)


if __name__ == "__main__":
    main()
