"""The models learn from the training set in the order it was built, however the Delta writer
stored its record batches (deltalake 1.6 wrote a multi-batch table's batches in no fixed order,
and LightGBM's bagging picks rows by position: the same rows gave another model)."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from assets.training.dataset import read_training_set
from resources.lakehouse import TRAINING_SET, Lakehouse


def test_the_training_set_reads_back_in_purchase_order(tmp_path):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    n = 40_000
    times = [start + timedelta(seconds=i // 2) for i in range(n)]  # ties: by transaction id
    ids = [f"tx_{i:08d}" for i in range(n)]
    built = pa.table(
        {"transaction_id": ids, "event_ts": pa.array(times, pa.timestamp("us", "UTC"))}
    )
    # Stored batches in another order than built (as the writer may store them).
    batches = built.to_batches(max_chunksize=10_000)
    lakehouse = Lakehouse(root_uri=str(tmp_path / "lakehouse"))
    lakehouse.overwrite(TRAINING_SET, pa.Table.from_batches(batches[::-1]), {})
    assert read_training_set(lakehouse).equals(built)
