"""FER2013 with its Training faces framed as the runtime frames a face in a camera frame, for a fine-tuning trial.

FER2013's own framing of a face varies from image to image (docs/benchmarks.md, "Where FER2013 puts a face"),
while the runtime frames every face alike: BlazeFace's box, levelled by the eyes, margin 0. Each Training image is
upscaled 4x into a grey canvas (as ``crop_geometry.py`` does, where the detector finds 98.6% of them), and the
runtime's own ``find_faces`` and ``face_crop`` cut it back out and the shared preprocessing makes it 48x48 again.
An image with no face found, or with more than one, is kept as it is. ``--share`` below 1 reframes only that share
of the images (drawn with ``--seed``) and keeps the rest as they are. PublicTest and PrivateTest are not touched:
``test/`` is a link to the original, so a model trained on the result is still selected and reported on FER2013's
own test images.

    python benchmarks/runtime_framed_training.py --data FER2013_DIR --out /tmp/fer_runtime_framed [--share 0.5]
    fer-train fit --data /tmp/fer_runtime_framed ...     # the trial: docs/training.md

The output holds pixels derived from FER2013: keep it outside the repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crop_geometry import place  # noqa: E402

from edge_runtime.core.preprocessing import preprocess_face  # noqa: E402
from edge_runtime.detectors import CropOptions, DetectorOptions, face_crop, find_faces, make_detector  # noqa: E402

_detector = None  # one per worker process


def reframe(job: tuple[Path, Path, bool]) -> bool:
    """Write ``source`` to ``target``, reframed when asked and one face is found; True when it was reframed."""
    global _detector
    source, target, wanted = job
    face = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    if wanted:
        if _detector is None:
            _detector = make_detector("blazeface", DetectorOptions(min_face=8, detect_width=0))
        image, _ = place(face)
        boxes = find_faces(_detector, image)
        crop = face_crop(image, boxes[0], CropOptions().margin, CropOptions().align) if len(boxes) == 1 else None
        if crop is not None:
            cv2.imwrite(str(target), preprocess_face(crop), [cv2.IMWRITE_JPEG_QUALITY, 100])
            return True
    shutil.copyfile(source, target)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 in the image-folder layout (train/, test/)")
    parser.add_argument("--out", required=True, help="folder to write (train/ and a test/ link); outside the repo")
    parser.add_argument("--share", type=float, default=1.0, help="share of the Training images to reframe")
    parser.add_argument("--seed", type=int, default=7, help="which images are reframed when --share is below 1")
    args = parser.parse_args()
    data, out = Path(args.data).resolve(), Path(args.out)
    if out.resolve().is_relative_to(ROOT):
        raise SystemExit(f"--out {out} is inside the repository; FER2013-derived pixels must stay outside it")
    sources = sorted(data.glob("train/*/*.jpg"))
    if not sources:
        raise SystemExit(f"no train/<class>/*.jpg under {data}; give FER2013 in the image-folder layout")
    wanted = np.random.default_rng(args.seed).random(len(sources)) < args.share
    jobs = [(source, out / "train" / source.parent.name / source.name, bool(want))
            for source, want in zip(sources, wanted, strict=True)]
    for folder in {target.parent for _, target, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    with Pool() as pool:
        reframed = sum(pool.map(reframe, jobs, chunksize=64))
    if not (out / "test").exists():
        (out / "test").symlink_to(data / "test")
    print(f"{len(jobs)} Training images, {reframed} reframed, written under {out}")


if __name__ == "__main__":
    main()
