"""Training throughput of the paper's models on this machine: images per second and seconds per epoch.

Times the real training step (tf.data pipeline with augmentation + oversampled
indices + model.fit) on the real Training split for a fixed number of steps
after a warm-up, without validation:

    python benchmarks/train_throughput.py --data /path/to/fer2013 --steps 60

Results: benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from lab.provenance import write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("FER2013_DIR"))
    parser.add_argument("--models", default="cnn,cnn_lstm_small,cnn_lstm")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    args = parser.parse_args()

    import keras

    from lab.data import load_fer2013
    from train.fit import FitConfig, training_batches
    from train.models import build_model

    train = load_fer2013(args.data).split("Training")
    steps_per_epoch = len(train) // args.batch_size
    results = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": f"{os.cpu_count()} cpus",
               "batch_size": args.batch_size, "models": {}}
    for name in args.models.split(","):
        config = FitConfig(model=name, batch_size=args.batch_size, epochs=1)
        model = build_model(name)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        dataset = training_batches(train, config, 0, steps_per_epoch)
        model.fit(dataset.take(10), verbose=0)  # warm-up: graph tracing and first allocations
        started = time.perf_counter()
        model.fit(dataset.skip(10).take(args.steps), verbose=0)
        seconds = time.perf_counter() - started
        images_per_second = args.steps * args.batch_size / seconds
        results["models"][name] = {"images_per_second": round(images_per_second, 1),
                                   "seconds_per_epoch": round(steps_per_epoch * args.batch_size / images_per_second, 1)}
        print(name, results["models"][name], flush=True)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
