"""The online store in Dagster: the asset, its freshness check, the refill sensor, and the
embedded redis-server it uses when no REDIS_URL is given."""

import json
import os
import signal
from datetime import date, timedelta

import numpy as np
import pytest
import redis
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context, materialize

from assets.features.online import online_customer_features, online_store_serves_newest_snapshot
from resources import local_redis
from resources.lakehouse import CUSTOMER_FEATURES, Lakehouse
from resources.local_redis import LocalRedis
from resources.online_store import OnlineStoreResource
from riskcore.codec import RecordCodec
from riskcore.online_store import Missing
from sensors.online_store import online_store_refill
from tests.snapshot_tables import snapshot_table

pytestmark = pytest.mark.integration
DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)  # as_of dates: partitions DAY - 1


@pytest.fixture
def setup(tmp_path, feature_set):
    lakehouse = Lakehouse(root_uri=str(tmp_path / "lakehouse"))
    tables = {
        DAY1: snapshot_table(feature_set, 900, DAY1, seed=1),
        DAY2: snapshot_table(feature_set, 1000, DAY2, seed=2),
    }
    for day, table in tables.items():
        lakehouse.replace_partitions(
            CUSTOMER_FEATURES, table, ["as_of_date"], f"as_of_date = '{day}'"
        )
    with LocalRedis(tmp_path / "redis") as server:
        resources = {"lakehouse": lakehouse, "online_store": OnlineStoreResource(url=server.url)}
        yield resources, tables, server


def _materialize(resources, as_of: date, instance=None, **kwargs):
    return materialize(
        [online_customer_features, online_store_serves_newest_snapshot],
        partition_key=(as_of - timedelta(days=1)).isoformat(),
        resources=resources,
        instance=instance,
        **kwargs,
    )


def _assert_store_equals(resources, feature_set, table):
    store = resources["online_store"].store(feature_set.version)
    expected = RecordCodec(feature_set).feature_matrix(table)
    records = store.get_many(table["customer_id"].to_pylist())
    assert not any(isinstance(r, Missing) for r in records)
    for record, row in zip(records, expected, strict=True):
        assert record.features.tobytes() == row.tobytes()


def test_the_asset_loads_the_newest_snapshot_and_reports_it(setup, feature_set):
    resources, tables, _ = setup
    result = _materialize(resources, DAY2)
    assert result.success
    metadata = result.asset_materializations_for_node("online_customer_features")[0].metadata
    assert metadata["customers"].value == 1000 and metadata["generation"].value == 1
    assert metadata["as_of"].value == "2026-03-02"
    for key in (
        "keys_written",
        "record_bytes",
        "duration_s",
        "customers_per_s",
        "redis_memory_delta_bytes",
        "bytes_per_customer",
    ):
        assert key in metadata
    assert all(c.passed for c in result.get_asset_check_evaluations())
    _assert_store_equals(resources, feature_set, tables[DAY2])

    # a backfill of the earlier day: not loaded, the pointer stays
    backfill = _materialize(resources, DAY1)
    skipped = backfill.asset_materializations_for_node("online_customer_features")[0].metadata
    assert "pointer never moves back" in skipped["skipped"].value
    _assert_store_equals(resources, feature_set, tables[DAY2])


def test_an_emptied_redis_fails_the_check_and_the_sensor_refills_it(setup, feature_set):
    resources, tables, server = setup
    instance = DagsterInstance.ephemeral()
    assert _materialize(resources, DAY2, instance).success
    context = build_sensor_context(instance=instance, resources=resources)
    assert isinstance(online_store_refill(context), SkipReason)

    assert online_store_serves_newest_snapshot(**resources).passed
    server.client().flushall()  # Redis restarted without its data
    check = online_store_serves_newest_snapshot(**resources)
    assert not check.passed and "no generation" in check.description

    request = online_store_refill(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(request, RunRequest)
    assert request.partition_key == (DAY2 - timedelta(days=1)).isoformat()
    assert _materialize(resources, DAY2, instance).success
    _assert_store_equals(resources, feature_set, tables[DAY2])
    assert isinstance(
        online_store_refill(build_sensor_context(instance=instance, resources=resources)),
        SkipReason,
    )


def test_a_snapshot_that_lost_most_customers_is_refused(setup, feature_set):
    resources, tables, _ = setup
    assert _materialize(resources, DAY1).success
    lakehouse = resources["lakehouse"]
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, tables[DAY2].slice(0, 100), ["as_of_date"], f"as_of_date = '{DAY2}'"
    )
    result = _materialize(resources, DAY2, raise_on_error=False)
    assert not result.success
    _assert_store_equals(resources, feature_set, tables[DAY1])


def test_the_embedded_server_is_shared_persisted_and_restarted(tmp_path):
    folder = tmp_path / "online_store"
    url = local_redis.ensure_running(folder)
    try:
        assert local_redis.ensure_running(folder) == url  # a second process attaches
        redis.Redis.from_url(url).set("k", "v")
        assert local_redis.stop(folder)  # saves a snapshot on the way down
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        url = local_redis.ensure_running(folder)  # the next process starts it again
        assert redis.Redis.from_url(url).get("k") == b"v"
        pid = json.loads((folder / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # found dead: started again, data reloaded
        url = local_redis.ensure_running(folder)
        assert redis.Redis.from_url(url).get("k") == b"v"
    finally:
        local_redis.stop(folder)


def test_entity_snapshots_load_into_generations_of_their_own(tmp_path, monkeypatch):
    """Each entity's newest snapshot goes to Redis in its own generation (its feature set's
    keys, the customers' pointer rules): every device, merchant and card reads back its values,
    an unknown one is missing, and a backfill of an older as_of moves no pointer."""
    from assets.features.online import online_entity_features
    from featurestore import online_features
    from featurestore.registry import load_feature_set
    from resources.lakehouse import ENTITY_FEATURES, ENTITY_KEYS

    lakehouse = Lakehouse(root_uri=str(tmp_path / "lakehouse"))
    sets = {e: load_feature_set(entity=e) for e in ENTITY_FEATURES}
    tables = {}
    for i, (entity, feature_set) in enumerate(sets.items()):
        for day in (DAY1, DAY2):
            table = snapshot_table(feature_set, 300 + i, day, seed=i, prefix=entity[0])
            lakehouse.replace_partitions(
                ENTITY_FEATURES[entity], table, ["as_of_date"], f"as_of_date = '{day}'"
            )
            tables[entity, day] = table
    with LocalRedis(tmp_path / "redis") as server:
        resources = {"lakehouse": lakehouse, "online_store": OnlineStoreResource(url=server.url)}
        for day in (DAY2, DAY1):  # the newest, then a backfill of the day before
            result = materialize(
                [online_entity_features],
                partition_key=(day - timedelta(days=1)).isoformat(),
                resources=resources,
            )
            assert result.success
        for entity, feature_set in sets.items():
            store = resources["online_store"].store(feature_set.version)
            assert store.current_generation().as_of.date() == DAY2
            table = tables[entity, DAY2]
            expected = RecordCodec(feature_set).feature_matrix(table)
            records = store.get_many(table[ENTITY_KEYS[entity]].to_pylist())
            for record, row in zip(records, expected, strict=True):
                assert record.features.tobytes() == row.tobytes()
            assert isinstance(store.get("never-seen"), Missing)
        metadata = result.asset_materializations_for_node("online_entity_features")[0].metadata
        assert "device.skipped" in metadata  # the backfill's as_of is older than the pointer
        # What a person reads: the SDK's online call, by the entity's own keys
        monkeypatch.setenv("REDIS_URL", server.url)
        device = tables["device", DAY2]
        frame = online_features(
            [device["device_id"][0].as_py(), "never-seen"], ["txn_count_7d"], entity="device"
        )
        assert frame["source"].to_list() == ["online", "unknown_customer"]
        assert frame["txn_count_7d"][0] == np.float32(device["txn_count_7d"][0].as_py())
