"""The daily job end to end: raw Delta -> dbt -> Delta snapshots, checked against the oracle,
re-run idempotently."""

import shutil
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from assets.ingest.raw import raw_labels, raw_transactions
from assets.ingest.sources import RawSources
from demo.run import run_partition_range
from featurestore.registry import load_feature_set
from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse
from riskcore import settings
from tests.feature_oracle import Label, Txn, snapshot
from tests.test_feature_oracle import assert_rows_equal

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIRST, LAST = date(2026, 1, 1), date(2026, 1, 20)


def _run(instance, start: date, end: date):
    result = run_partition_range(start, end, instance)
    assert result.success
    return result


def _snapshot_rows(as_of_date: date):
    table = (
        Lakehouse().dataset(CUSTOMER_FEATURES).to_table(filter=pc.field("as_of_date") == as_of_date)
    )
    return sorted(table.to_pylist(), key=lambda r: r["customer_id"])


@pytest.fixture(scope="module")
def built():
    instance = DagsterInstance.ephemeral()
    result = _run(instance, FIRST, LAST)
    return instance, result


def test_snapshots_cover_every_partition_and_pass_dbt_checks(built):
    _, result = built
    checks = result.get_asset_check_evaluations()
    assert len(checks) >= 30 and all(c.passed for c in checks)
    features = Lakehouse().dataset(CUSTOMER_FEATURES).to_table(columns=["as_of_date", "as_of"])
    as_of_dates = sorted(set(features["as_of_date"].to_pylist()))
    assert as_of_dates == [FIRST + timedelta(days=i) for i in range(1, 21)]
    for d, ts in zip(
        features["as_of_date"].to_pylist()[:50], features["as_of"].to_pylist()[:50], strict=True
    ):
        assert ts == datetime(d.year, d.month, d.day, tzinfo=UTC)


def _assert_matches_oracle(as_of: datetime) -> None:
    lakehouse = Lakehouse()
    tx = lakehouse.dataset(TRANSACTIONS).to_table().to_pylist()
    labels = lakehouse.dataset(LABELS).to_table().to_pylist()
    fields = Txn.__dataclass_fields__
    expected = snapshot(
        [Txn(**{k: r[k] for k in fields}) for r in tx],
        [Label(**{k: r[k] for k in Label.__dataclass_fields__}) for r in labels],
        as_of,
    )
    rows = _snapshot_rows(as_of.date())
    assert len(rows) == len(expected) > 100
    fs = load_feature_set()
    names = [c.name for c in fs.features + fs.context]
    for row in rows:
        assert_rows_equal(row, expected[row["customer_id"]], names, row["customer_id"])
    assert "card_hash" not in rows[0]


def test_delta_snapshot_equals_the_oracle_on_generated_data(built):
    _assert_matches_oracle(datetime(2026, 1, 21, tzinfo=UTC))


def test_days_ingested_without_features_are_rolled_up_later(built):
    """Raw days loaded on their own (no dbt run for them) still count in a later snapshot;
    so do the labels of those days (late chargebacks of earlier purchases, in landing files)."""
    instance, _ = built
    purchases = Lakehouse().dataset(TRANSACTIONS).to_table(columns=["transaction_id"])
    for i, day in enumerate(("2026-01-21", "2026-01-22", "2026-01-23")):
        folder = settings.load().landing_dir / "labels" / day
        folder.mkdir(parents=True, exist_ok=True)
        # Three of its purchases, and one purchase never stored (kept, with no customer).
        ids = [*purchases["transaction_id"].to_pylist()[i * 40 : i * 40 + 3], f"tx_gone_{i}"]
        label_ts = datetime.fromisoformat(f"{day}T10:00:00+00:00")
        pq.write_table(
            pa.table({"transaction_id": ids, "label": ["fraud"] * 4, "label_ts": [label_ts] * 4}),
            folder / "late_chargebacks.parquet",
        )
        result = materialize(
            [raw_transactions, raw_labels],
            partition_key=day,
            instance=instance,
            resources={
                "lakehouse": Lakehouse(),
                "raw_sources": RawSources(customers=settings.load().customers),
            },
        )
        assert result.success
    try:
        _run(instance, date(2026, 1, 24), date(2026, 1, 24))
    finally:  # the landing files are this test's alone
        shutil.rmtree(settings.load().landing_dir / "labels")
    _assert_matches_oracle(datetime(2026, 1, 25, tzinfo=UTC))
    # The labels of those days were joined by the run of the 24th (labels go in by the day
    # they became known, each day once: a day loaded without a run is caught up), those whose
    # purchase is not stored (before the first day) with no customer.
    with duckdb.connect(str(settings.load().duckdb_path), read_only=True) as con:
        joined = con.sql(
            "select label_date, count(*) from int_labelled_purchases "
            "where label_date between '2026-01-21' and '2026-01-24' group by all order by 1"
        ).fetchall()
    stored = (
        Lakehouse()
        .dataset(LABELS)
        .to_table(filter=pc.field("label_date") >= date(2026, 1, 21))
        .group_by("label_date")
        .aggregate([("transaction_id", "count")])
        .sort_by("label_date")
    )
    counts = stored.to_pydict()
    expected = list(zip(counts["label_date"], counts["transaction_id_count"], strict=True))
    assert joined == expected and len(joined) >= 3


def test_rematerializing_a_partition_gives_an_identical_snapshot(built):
    instance, _ = built
    before = _snapshot_rows(LAST + timedelta(days=1))
    earlier = _snapshot_rows(LAST)
    _run(instance, LAST, LAST)
    assert _snapshot_rows(LAST + timedelta(days=1)) == before
    assert _snapshot_rows(LAST) == earlier


def test_a_failed_dbt_build_leaves_the_previous_snapshot_in_place(built, monkeypatch):
    instance, _ = built
    before = _snapshot_rows(LAST + timedelta(days=1))
    # DuckDB cannot run the models in 1 MB: the build fails part-way, as a real fault would.
    monkeypatch.setenv("RISK_DUCKDB_MEMORY_LIMIT", "1MB")
    result = run_partition_range(LAST, LAST, instance, raise_on_error=False)
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {"dbt_features"}
    assert _snapshot_rows(LAST + timedelta(days=1)) == before


def test_the_online_store_serves_the_newest_snapshot(built):
    """The daily job ends in Redis (the embedded server): the newest snapshot, value for value
    as the codec encodes the Delta rows."""
    from assets.features.online import newest_as_of_date
    from resources.online_store import from_environment
    from riskcore.codec import RecordCodec

    fs = load_feature_set()
    newest = newest_as_of_date(Lakehouse())
    assert newest >= LAST + timedelta(days=1)
    store = from_environment().store(fs.version)
    assert store.current_generation(fresh=True).as_of.date() == newest
    table = Lakehouse().dataset(CUSTOMER_FEATURES).to_table(filter=pc.field("as_of_date") == newest)
    expected = RecordCodec(fs).feature_matrix(table)
    records = store.get_many(table["customer_id"].to_pylist())
    assert len(records) > 100
    for record, row in zip(records, expected, strict=True):
        assert record.features.tobytes() == row.tobytes()
