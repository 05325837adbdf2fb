"""The MQTT spool: durable, ordered, bounded, and a torn last record (a crash mid-write) is cut off and reported."""

import json

import pytest

from edge_runtime.sinks.spool import Spool, SpooledMessage


def message(n: int) -> SpooledMessage:
    return SpooledMessage("fer/events", json.dumps({"frame": n}), False)


def test_messages_survive_reopening_in_order(tmp_path):
    spool = Spool(tmp_path / "spool.jsonl", max_bytes=1_000_000, sync_every=3)
    for n in range(10):
        assert spool.append(message(n))
    spool.close()
    again = Spool(tmp_path / "spool.jsonl", max_bytes=1_000_000)
    assert again.torn == 0 and again.read_all() == [message(n) for n in range(10)]
    again.clear()
    assert again.read_all() == [] and again.size == 0


def test_a_torn_last_record_is_cut_off_and_counted(tmp_path, caplog):
    path = tmp_path / "spool.jsonl"
    spool = Spool(path, max_bytes=1_000_000)
    for n in range(5):
        spool.append(message(n))
    spool.close()
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:17])  # a kill -9 in the middle of a write
    reopened = Spool(path, max_bytes=1_000_000)
    assert reopened.torn == 1 and reopened.read_all() == [message(n) for n in range(5)]
    assert path.read_bytes() == whole  # repaired on disk: the next append starts a clean line
    assert any("1 torn message" in r.getMessage() for r in caplog.records)


def test_the_spool_is_bounded(tmp_path):
    line = len(json.dumps({"topic": "fer/events", "retain": False, "payload": json.dumps({"frame": 0})},
                          separators=(",", ":"))) + 1
    spool = Spool(tmp_path / "spool.jsonl", max_bytes=3 * line)
    assert [spool.append(message(0)) for _ in range(4)] == [True, True, True, False]
    assert len(spool.read_all()) == 3


GARBAGE = [b"not json at all\n", b'{"topic": "fer/events"}\n', b"[1, 2, 3]\n", b"\xff\xfe\x00 binary\n"]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_bad_lines_anywhere_are_set_aside_once_and_delivery_goes_on(tmp_path, caplog, where):
    path = tmp_path / "spool.jsonl"
    spool = Spool(path, max_bytes=1_000_000)
    for n in range(6):
        spool.append(message(n))
    spool.close()
    lines = path.read_bytes().splitlines(keepends=True)
    at = {"start": 0, "middle": 3, "end": len(lines)}[where]
    path.write_bytes(b"".join(lines[:at] + GARBAGE + lines[at:]))
    spool = Spool(path, max_bytes=1_000_000)
    if where == "end":  # start-up recovery cuts a bad last line; the ones before it are left for reading
        assert spool.torn == 1
    batch, offset = spool.read_from(0, 3)
    assert [m for m, _, _ in batch] == [message(n) for n in range(3)]
    rest, end = spool.read_from(offset, 100)
    assert [m for m, _, _ in rest] == [message(n) for n in range(3, 6)] and end == spool.size
    # Read again from the start (as after a reconnect): the same lines are skipped, but set aside only once.
    assert spool.read_all() == [message(n) for n in range(6)]
    set_aside = len(GARBAGE) - spool.torn
    assert spool.quarantined == set_aside
    assert spool.quarantine_path.read_bytes().count(b"\n") == set_aside
    assert sum("set aside" in r.getMessage() for r in caplog.records) == set_aside


def test_a_refused_or_short_write_leaves_no_torn_line_and_is_reported(tmp_path, monkeypatch):
    # The disk is the boundary mocked here: os.write fails (ENOSPC) or writes only part of the line, as a full disk
    # does.
    import errno
    import os

    import edge_runtime.sinks.spool as spool_module

    spool = Spool(tmp_path / "spool.jsonl", max_bytes=1_000_000)
    spool.append(message(0))
    real_write = os.write

    def disk_full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def half_written(fd, data):
        return real_write(fd, data[: len(data) // 2])

    for failing_write, reason in ((disk_full, "No space left on device"), (half_written, "a short write")):
        monkeypatch.setattr(spool_module.os, "write", failing_write)
        assert spool.append(message(1)) is False and reason in spool.refusal
        monkeypatch.setattr(spool_module.os, "write", real_write)
        assert spool.size == os.path.getsize(spool.path)  # the counter matches the file: nothing torn is left
    assert spool.append(message(2))
    assert spool.read_all() == [message(0), message(2)] and spool.quarantined == 0
