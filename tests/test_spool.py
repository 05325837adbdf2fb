"""The MQTT spool: durable, ordered, bounded, and a torn last record (a crash mid-write) is cut off and reported."""

import json

from edge_runtime.spool import Spool, SpooledMessage


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
