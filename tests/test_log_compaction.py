"""Inference-log compaction on a real Delta log written in serving's row format: closed days
become one file each with the same rows, the open day is left to the writer, unreferenced
files are vacuumed, and a second run changes nothing."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from resources.lakehouse import Lakehouse
from riskcore.timestamps import micros
from sensors.jobs import inference_log_maintenance
from serving.inference_log import LogRow, to_table


def log_rows(day: datetime, n: int, start: int) -> list[LogRow]:
    """Decisions as serving records them (one feature), scored a second apart from ``day``."""
    rng = np.random.default_rng(start)
    return [
        LogRow(
            transaction_id=f"t{start + i}",
            customer_hash="h",
            event_ts=micros(day),
            scored_at=micros(day + timedelta(seconds=i)),
            decision="approve",
            fraud_score=float(rng.random()),
            default_score=None,
            fraud_model="risk_fraud/1",
            default_model=None,
            model_kind="behavioural",
            feature_set_version="fs",
            features_as_of=None,
            feature_source="online",
            lookup_ms=0.1,
            inference_ms=0.05,
            total_ms=0.2,
            feature_names=("amount",),
            vector=np.array([rng.random()]),
        )
        for i in range(n)
    ]


def _rows(day: datetime, n: int, start: int) -> pa.Table:
    return to_table(log_rows(day, n, start))


@pytest.mark.integration
def test_closed_days_are_compacted_and_the_open_day_left_alone(tmp_path, monkeypatch):
    uri = str(tmp_path / "inference_log")
    monkeypatch.setenv("RISK_INFERENCE_LOG_URI", uri)
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in (now - timedelta(days=2), now - timedelta(days=1), now):
        for batch in range(6):  # six flushes a day
            write_deltalake(
                uri,
                _rows(day, 50, int(day.timestamp()) + batch * 50),
                mode="append",
                partition_by=["scored_date"],
            )
    before = DeltaTable(uri).to_pyarrow_table().sort_by("transaction_id")
    assert len(DeltaTable(uri).file_uris()) == 18

    def run():
        result = inference_log_maintenance.execute_in_process(
            resources={"lakehouse": Lakehouse(root_uri=str(tmp_path))},
            run_config={"ops": {"compact_inference_log": {"config": {"retention_hours": 0}}}},
        )
        assert result.success
        return result.output_for_node("compact_inference_log")

    summary = run()
    table = DeltaTable(uri)
    files = table.file_uris()
    today = [f for f in files if f"scored_date={now.date().isoformat()}" in f]
    assert len(today) == 6 and len(files) == 6 + 2  # one file per closed day
    assert summary["files_compacted"] == 12 and summary["files_vacuumed"] == 12
    assert table.to_pyarrow_table().sort_by("transaction_id").equals(before)
    assert len(list((tmp_path / "inference_log").rglob("*.parquet"))) == 8  # vacuumed from disk
    again = run()
    assert again["files_compacted"] == 0 and again["files_after"] == 8
