"""The inference log's writer spools hand-offs to local disk and commits them together: fewer,
larger files; nothing acknowledged is lost when the writer dies (the next one commits its spool).
A real writer process, a real Delta table."""

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable

from serving.inference_log import InferenceLog
from serving.log_writer import spool_folder
from tests.test_log_compaction import log_rows

pytestmark = pytest.mark.integration


NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)  # rows a second apart stay in one day partition


def _handed_off(log: InferenceLog, start: int, n: int = 20) -> None:
    for row in log_rows(NOON, n, start):
        log.append(row)
    assert log.hand_off() == n


def test_hand_offs_are_committed_as_one_append_and_a_dead_writers_spool_is_not_lost(tmp_path):
    uri, spool = str(tmp_path / "log"), tmp_path / "spool"
    log = InferenceLog(uri, commit_s=3600, spool_dir=str(spool))  # no thread: hand-offs by hand
    for batch in range(5):  # what the thread hands over every flush_s
        _handed_off(log, batch * 20)
    assert log.pending == 100 and not (tmp_path / "log").exists()  # spooled, not yet committed
    assert log.flush() == 100 and log.pending == 0
    table = DeltaTable(uri)
    assert table.version() == 0 and len(table.file_uris()) == 1  # one commit, one file
    assert table.to_pyarrow_table().num_rows == 100

    _handed_off(log, 1000, 30)  # acknowledged: on disk in the spool ...
    log._writer.kill()  # ... when the writer dies
    log._writer.wait()
    fresh = InferenceLog(uri, commit_s=3600, spool_dir=str(spool))
    assert fresh.flush() == 0  # none of its own; its writer committed the dead one's spool first
    ids = DeltaTable(uri).to_pyarrow_table()["transaction_id"].to_pylist()
    assert sorted(ids) == sorted(
        [f"t{i}" for i in range(100)] + [f"t{1000 + i}" for i in range(30)]
    )
    fresh.close()
    log._writer = None
    assert not list(spool_folder(spool, uri).glob("*"))  # a closed writer leaves nothing


def test_a_full_spool_refuses_batches_and_the_service_keeps_them(tmp_path):
    """A table that cannot be written: the spool takes up to max_pending rows, then refuses; the
    service holds the rest in memory within the same bound (the oldest slices dropped)."""
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the table should be")
    uri = str(blocked / "log")
    log = InferenceLog(uri, commit_s=3600, spool_dir=str(tmp_path / "spool"), max_pending=50)
    _handed_off(log, 0, 40)
    for row in log_rows(NOON, 30, 100):
        log.append(row)
    assert log.hand_off() == 0 and log.pending == 40  # refused: 70 > 50, the 30 dropped
    assert log.flush() == 0
    blocked.unlink()
    blocked.mkdir()
    assert log.flush() == 40 and log.pending == 0
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 40
    log.close()


def test_the_spool_is_committed_every_commit_interval_without_a_flush(tmp_path):
    uri = str(tmp_path / "log")
    log = InferenceLog(uri, flush_s=0.1, commit_s=1.0, spool_dir=str(tmp_path / "spool")).start()
    try:
        began = time.monotonic()
        while time.monotonic() - began < 2.5:  # ~20 hand-offs
            for row in log_rows(NOON, 5, int(time.monotonic() * 1e6)):
                log.append(row)
            time.sleep(0.1)
        first_commit = Path(uri) / "_delta_log" / f"{0:020d}.json"
        deadline = time.monotonic() + 10
        while not first_commit.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        table = DeltaTable(uri)
        assert table.to_pyarrow_table().num_rows > 0
        assert table.version() + 1 <= 4  # a commit a second, not one per hand-off
    finally:
        log.close()
