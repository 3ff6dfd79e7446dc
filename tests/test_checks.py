"""Freshness and data-quality checks: a stale partition and a stale online generation each turn
their check red, fresh ones green; a snapshot that lost half its customers or whose nulls jumped
fails the blocking consistency check; a model below its AUC floor fails model quality."""

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from dagster import DagsterInstance, asset, build_asset_check_context, materialize

from assets.features.export import customer_features_daily
from assets.monitoring.checks import (
    customer_features_fresh,
    model_quality,
    online_store_fresh,
    raw_transactions_fresh,
    snapshot_consistent,
)
from assets.partitions import daily_partitions, partition_range_tags
from resources.lakehouse import CUSTOMER_FEATURES, TRANSACTIONS, Lakehouse
from resources.local_redis import LocalRedis
from resources.online_store import OnlineStoreResource
from riskcore.codec import with_digests
from riskcore.online_store import OnlineStore
from riskcore.timestamps import as_of_time
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
    assert snapshot_consistent(build_asset_check_context(), lakehouse=lakehouse).passed
    _snapshot(lakehouse, feature_set, date(2026, 3, 3), customers=150, seed=2)
    shrunk = snapshot_consistent(build_asset_check_context(), lakehouse=lakehouse)
    assert not shrunk.passed and "150 rows against 400" in shrunk.description
    table = snapshot_table(feature_set, 400, date(2026, 3, 3), seed=2)
    column = table.schema.get_field_index("amount_mean_30d")
    table = table.set_column(
        column, "amount_mean_30d", pa.nulls(400, table.schema.field(column).type)
    )
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, table, ["as_of_date"], "as_of_date = '2026-03-03'"
    )
    nulled = snapshot_consistent(build_asset_check_context(), lakehouse=lakehouse)
    assert not nulled.passed and "amount_mean_30d: null share" in nulled.description


@asset(key=customer_features_daily.key, partitions_def=daily_partitions)
def _exported() -> None:
    """Stands in for the Delta export in a run: the test wrote the snapshots already."""


def _check_run(lakehouse: Lakehouse, partition_key: str | None = None, tags=None):
    """The blocking check as a run of the snapshot asset evaluates it: for the run's
    partition(s)."""
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [_exported, snapshot_consistent],
            partition_key=partition_key,
            tags=tags,
            resources={"lakehouse": lakehouse},
            instance=instance,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_rebuilt_old_partition_is_checked_against_its_own_predecessor(tmp_path, feature_set):
    """Re-running partition 2026-03-14 (as_of 03-15) when as_of 03-20 exists: the rebuilt
    snapshot is compared with as_of 03-14, not the newest with the one before it."""
    lakehouse = Lakehouse(root_uri=str(tmp_path))
    _snapshot(lakehouse, feature_set, date(2026, 3, 14), customers=400)
    _snapshot(lakehouse, feature_set, date(2026, 3, 15), customers=400, seed=1)
    _snapshot(lakehouse, feature_set, date(2026, 3, 20), customers=400, seed=2)
    assert _check_run(lakehouse, "2026-03-14").passed
    # the re-run of that day lost most customers: the newest pair (03-20 against 03-15) is
    # fine, the day's own comparison is not
    _snapshot(lakehouse, feature_set, date(2026, 3, 15), customers=150, seed=3)
    shrunk = _check_run(lakehouse, "2026-03-14")
    assert not shrunk.passed
    assert "2026-03-15: 150 rows against 400 on 2026-03-14" in shrunk.description
    assert shrunk.metadata["compared_with"].value == "2026-03-14"
    # a run over a range of partitions holds each built day to the day before it
    ranged = _check_run(lakehouse, tags=partition_range_tags(date(2026, 3, 13), date(2026, 3, 14)))
    assert not ranged.passed and "2026-03-15: 150 rows" in ranged.description
    # the newest day's own run compares it with the rebuilt day (150 -> 400: fine)
    assert _check_run(lakehouse, "2026-03-19").passed
    # a jump of nulls in the rebuilt day is found the same way
    table = snapshot_table(feature_set, 400, date(2026, 3, 15), seed=3)
    column = table.schema.get_field_index("amount_mean_30d")
    table = table.set_column(
        column, "amount_mean_30d", pa.nulls(400, table.schema.field(column).type)
    )
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, table, ["as_of_date"], "as_of_date = '2026-03-15'"
    )
    nulled = _check_run(lakehouse, "2026-03-14")
    assert not nulled.passed and "2026-03-15: amount_mean_30d: null share" in nulled.description


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


def test_every_entity_snapshot_has_its_freshness_check(tmp_path):
    """The device, merchant and card tables are watched like the customers' (by their newest
    as_of, not by when a run wrote them)."""
    from assets.monitoring.checks import entity_features_fresh
    from resources.lakehouse import ENTITY_FEATURES

    lakehouse = Lakehouse(root_uri=str(tmp_path))
    assert [next(iter(c.check_specs)).asset_key.path[-1] for c in entity_features_fresh] == [
        f"{e}_features_daily" for e in ENTITY_FEATURES
    ]
    check = entity_features_fresh[0]  # the devices'
    assert not check(lakehouse=lakehouse).passed  # no table yet
    for day in (date(2026, 3, 1), TODAY):
        table = pa.table(
            {
                "device_id": ["d1"],
                "as_of": pa.array([as_of_time(day)], pa.timestamp("us", "UTC")),
                "as_of_date": pa.array([day], pa.date32()),
            }
        )
        lakehouse.replace_partitions(
            ENTITY_FEATURES["device"], table, ["as_of_date"], f"as_of_date = '{day}'"
        )
        assert check(lakehouse=lakehouse).passed == (day == TODAY)
