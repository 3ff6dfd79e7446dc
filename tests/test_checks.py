"""Freshness and data-quality checks: a stale partition and a stale online generation each turn
their check red, fresh ones green; a snapshot that lost half its customers or whose nulls jumped
fails the blocking consistency check; a model below its AUC floor fails model quality."""

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from assets.monitoring.checks import (
    customer_features_fresh,
    model_quality,
    online_store_fresh,
    raw_transactions_fresh,
    snapshot_consistent,
)
from resources.lakehouse import CUSTOMER_FEATURES, TRANSACTIONS, Lakehouse
from resources.local_redis import LocalRedis
from resources.online_store import OnlineStoreResource
from riskcore.codec import with_digests
from riskcore.online_store import OnlineStore
from tests.snapshot_tables import snapshot_table

TODAY = datetime.now(UTC).date()


def _transactions(day: date) -> pa.Table:
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pa.table(
        {
            "transaction_id": ["t1"],
            "customer_id": ["c1"],
            "event_ts": pa.array([at], pa.timestamp("us", "UTC")),
        }
    )


def _snapshot(lakehouse: Lakehouse, feature_set, as_of_day: date, customers=200, seed=0):
    table = snapshot_table(feature_set, customers, as_of_day, seed=seed)
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, table, ["as_of_date"], f"as_of_date = '{as_of_day}'"
    )
    return table


def test_raw_freshness_follows_the_newest_day_of_data(tmp_path):
    lakehouse = Lakehouse(root_uri=str(tmp_path))
    assert not raw_transactions_fresh(lakehouse=lakehouse).passed  # nothing yet
    lakehouse.replace_day(
        TRANSACTIONS, _transactions(date(2026, 3, 1)), "event_date", date(2026, 3, 1)
    )
    stale = raw_transactions_fresh(lakehouse=lakehouse)
    assert not stale.passed and "h old" in stale.description
    yesterday = TODAY - timedelta(days=1)
    lakehouse.replace_day(TRANSACTIONS, _transactions(yesterday), "event_date", yesterday)
    assert raw_transactions_fresh(lakehouse=lakehouse).passed


def test_snapshot_freshness_follows_the_newest_as_of(tmp_path, feature_set):
    lakehouse = Lakehouse(root_uri=str(tmp_path))
    _snapshot(lakehouse, feature_set, date(2026, 3, 1))
    assert not customer_features_fresh(lakehouse=lakehouse).passed
    _snapshot(lakehouse, feature_set, TODAY)
    assert customer_features_fresh(lakehouse=lakehouse).passed


@pytest.mark.integration
def test_a_stale_or_missing_online_generation_is_red(tmp_path, feature_set):
    with LocalRedis(tmp_path / "redis") as server:
        resource = OnlineStoreResource(url=server.url)
        empty = online_store_fresh(online_store=resource)
        assert not empty.passed and "no generation" in empty.description
        store = OnlineStore(server.client(), feature_set.version)
        old = snapshot_table(feature_set, 50, date(2026, 3, 1))
        store.write_generation(
            [with_digests(old)],
            feature_set=feature_set,
            customers=50,
            as_of=datetime(2026, 3, 1, tzinfo=UTC),
        )
        stale = online_store_fresh(online_store=resource)
        assert not stale.passed and "serving snapshot as_of" in stale.description
        new = snapshot_table(feature_set, 50, TODAY)
        midnight = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC)
        store.write_generation(
            [with_digests(new)], feature_set=feature_set, customers=50, as_of=midnight
        )
        assert online_store_fresh(online_store=resource).passed


def test_a_snapshot_that_lost_customers_or_gained_nulls_fails(tmp_path, feature_set):
    lakehouse = Lakehouse(root_uri=str(tmp_path))
    _snapshot(lakehouse, feature_set, date(2026, 3, 1), customers=400)
    _snapshot(lakehouse, feature_set, date(2026, 3, 2), customers=400, seed=1)
    assert snapshot_consistent(lakehouse=lakehouse).passed
    _snapshot(lakehouse, feature_set, date(2026, 3, 3), customers=150, seed=2)
    shrunk = snapshot_consistent(lakehouse=lakehouse)
    assert not shrunk.passed and "150 rows against 400" in shrunk.description
    table = snapshot_table(feature_set, 400, date(2026, 3, 3), seed=2)
    column = table.schema.get_field_index("amount_mean_30d")
    table = table.set_column(
        column, "amount_mean_30d", pa.nulls(400, table.schema.field(column).type)
    )
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, table, ["as_of_date"], "as_of_date = '2026-03-03'"
    )
    nulled = snapshot_consistent(lakehouse=lakehouse)
    assert not nulled.passed and "amount_mean_30d: null share" in nulled.description


@pytest.mark.integration
def test_model_quality_holds_new_versions_to_a_floor(env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.tracking_uri)
    monkeypatch.setenv("RISK_MIN_AUC_FRAUD", "0.5")
    monkeypatch.setenv("RISK_MIN_AUC_DEFAULT", "0.5")
    floors_met = model_quality()  # (other tests may register weaker versions: importance)
    assert "test AUC" not in floors_met.description
    assert 0.5 < floors_met.metadata["fraud_auc"].value <= 1
    monkeypatch.setenv("RISK_MIN_AUC_DEFAULT", "0.99999")  # (fraud is separable here: AUC 1)
    failed = model_quality()
    assert not failed.passed and "risk_default" in failed.description
    assert "test AUC" in failed.description


def test_the_freshness_sensor_runs_the_checks_every_half_hour():
    from dagster import DagsterInstance, RunRequest, build_sensor_context

    from sensors.freshness import freshness

    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance)
        assert isinstance(freshness(context), RunRequest)
        again = build_sensor_context(instance=instance, cursor=context.cursor)
        assert freshness(again) is None  # the same half hour: no second run
