"""The online store against real redis-server processes: round trips, generations, faults."""

import itertools
import math
import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.features.online import snapshot_query
from resources.local_redis import LocalRedis
from riskcore.codec import LayoutMismatch, RecordCodec, fingerprint, slot, slots, with_digests
from riskcore.online_store import (
    Missing,
    OnlineStore,
    OnlineStoreError,
    OnlineStoreUnavailable,
    connect,
)
from riskcore.timestamps import as_of_time
from tests.redis_servers import self_signed_certificate, start_cluster, wait_until_gone
from tests.snapshot_tables import arrow_type, snapshot_table

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 1)


def write(store: OnlineStore, fs, table: pa.Table, day: date = DAY, batch_rows=None, **kw):
    table = with_digests(table)
    batches = table.to_batches(batch_rows) if batch_rows else [table]
    return store.write_generation(
        batches, feature_set=fs, as_of=as_of_time(day), customers=table.num_rows, **kw
    )


def expected_record(fs, row: dict) -> tuple[list, dict]:
    """What a row must read back as, computed from the raw values (not through the codec)."""
    features = []
    for column in fs.features:
        value = row[column.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            features.append(None)
        elif column.categories is not None:
            features.append(float(column.categories.index(value)))
        else:
            features.append(float(np.float32(float(value))))
    devices = row["known_devices"]
    context = {
        "home_country": row["home_country"],
        "known_devices": None if devices is None else tuple(fingerprint(d) for d in devices),
    }
    return features, context


def assert_serves(store: OnlineStore, fs, table: pa.Table, day: date = DAY) -> None:
    rows = table.to_pylist()
    store.current_generation(fresh=True)  # what Redis says now, not a cached pointer
    records = store.get_many([r["customer_id"] for r in rows])
    for row, record in zip(rows, records, strict=True):
        assert not isinstance(record, Missing), record
        features, context = expected_record(fs, row)
        got = [None if math.isnan(v) else v for v in record.features.tolist()]
        assert got == features, row["customer_id"]
        assert record.context == context
        assert record.as_of == as_of_time(day)
    one = store.get(rows[0]["customer_id"])
    assert one.features.tobytes() == records[0].features.tobytes()


@pytest.fixture
def server(tmp_path):
    with LocalRedis(tmp_path / "redis") as s:
        yield s


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    with LocalRedis(tmp_path_factory.mktemp("redis")) as s:
        yield s


def _value(column):
    if column.categories is not None:
        return st.one_of(st.none(), st.sampled_from(column.categories))
    if column.kind == "text":
        return st.one_of(st.none(), st.text(max_size=6))
    if column.kind == "text_list":
        return st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=12), max_size=8))
    if column.data_type == "integer":
        return st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
    if column.data_type.startswith("decimal"):
        return st.one_of(st.none(), st.decimals(-(10**12), 10**12, places=2, allow_nan=False))
    finite = st.floats(-3e38, 3e38)  # float32's range (beyond it a value becomes +-inf)
    return st.one_of(st.none(), st.just(math.nan), finite)


@st.composite
def snapshot_rows(draw, fs):
    ids = draw(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=12, unique=True))
    columns = [c for c in fs.columns if c.role != "key"]
    rows = [{"customer_id": cid, **{c.name: draw(_value(c)) for c in columns}} for cid in ids]
    table = pa.table(
        {
            "customer_id": pa.array(ids),
            "as_of": pa.array([as_of_time(DAY)] * len(ids), pa.timestamp("us", "UTC")),
            **{c.name: pa.array([r[c.name] for r in rows], arrow_type(c)) for c in columns},
        }
    )
    return table


_prefixes = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_feature_round_trips(feature_set, shared_server, data):
    """Any values (null, NaN, unicode ids and countries, up to 8 devices) read back as written,
    by ``get`` and ``get_many`` alike."""
    table = data.draw(snapshot_rows(feature_set))
    store = OnlineStore(shared_server.client(), feature_set.version, prefix=f"p{next(_prefixes)}")
    write(store, feature_set, table)
    assert_serves(store, feature_set, table)


def test_duckdb_digests_place_customers_as_serving_does(feature_set):
    """The materialization's digests (DuckDB's sha256) equal serving's (hashlib) for the same
    ids and devices, unicode included."""
    ids = ["c1", "ümlaut-客户", "", "x" * 300]
    table = snapshot_table(feature_set, len(ids), DAY)
    table = table.set_column(0, "customer_id", pa.array(ids))
    devices = [["d1", "设备"], [], None, ["a" * 50]]
    table = table.set_column(
        table.schema.get_field_index("known_devices"), "known_devices", pa.array(devices)
    )
    batch = table  # noqa: F841  (read by DuckDB by name)
    hashed = duckdb.sql(snapshot_query(feature_set, "batch")).to_arrow_table()
    buckets, fields = slots(hashed["customer_digest"], 9)
    assert [(int(b), f) for b, f in zip(buckets, fields, strict=True)] == [slot(c, 9) for c in ids]
    records = RecordCodec(feature_set).encode(hashed)
    decoded = [RecordCodec(feature_set).decode(c, r) for c, r in zip(ids, records, strict=True)]
    assert [r.context["known_devices"] for r in decoded] == [
        None if d is None else tuple(fingerprint(x) for x in d) for d in devices
    ]


def test_unknown_customers_and_an_empty_store_are_explicit_misses(feature_set, server):
    store = OnlineStore(server.client(), feature_set.version)
    assert store.get("c1") == Missing("c1", "no_generation")
    write(store, feature_set, snapshot_table(feature_set, 50, DAY))
    assert store.get("nobody") == Missing("nobody", "unknown_customer")
    assert store.get_many(["nobody", "c000000001"])[0] == Missing("nobody", "unknown_customer")
    assert store.get_many([]) == []


def test_a_record_never_decodes_against_another_layout(feature_set, server):
    write(
        OnlineStore(server.client(), feature_set.version),
        feature_set,
        snapshot_table(feature_set, 20, DAY),
    )
    value = server.client().hget(*_first_key_and_field(server, feature_set.version, "c000000003"))
    other = type(feature_set)("fs_other", feature_set.columns[:-1])
    with pytest.raises(LayoutMismatch):
        RecordCodec(other).decode("c000000003", value)
    # and a store of another version sees none of these records
    assert OnlineStore(server.client(), "fs_other").get("c000000003").reason == "no_generation"


def _first_key_and_field(server, version, customer_id):
    store = OnlineStore(server.client(), version)
    generation = store.current_generation()
    bucket, field = slot(customer_id, generation.bucket_bits)
    return store.bucket_key(generation.id, bucket), field


def test_the_layout_travels_with_the_records(feature_set, server):
    """A reader with nothing but the version decodes (the layout is stored beside the data)."""
    write(
        OnlineStore(server.client(), feature_set.version),
        feature_set,
        snapshot_table(feature_set, 10, DAY),
    )
    reader = OnlineStore(server.client(), feature_set.version)
    assert reader.codec.feature_set == feature_set
    assert reader.get("c000000001").customer_id == "c000000001"


def test_the_pointer_never_moves_back_and_a_new_snapshot_replaces_the_old(feature_set, server):
    store = OnlineStore(server.client(), feature_set.version, superseded_ttl_s=1)
    day2 = DAY + timedelta(days=1)
    first = write(store, feature_set, snapshot_table(feature_set, 300, DAY))
    # the next snapshot lost customers 200..299: they must not linger (Feast's stale leftovers)
    second_table = snapshot_table(feature_set, 200, day2, seed=2)
    second = write(store, feature_set, second_table, day2)
    assert second.generation > first.generation
    assert_serves(store, feature_set, second_table, day2)
    assert store.get("c000000250") == Missing("c000000250", "unknown_customer")
    # a backfill of an older day writes nothing and leaves the pointer alone
    backfill = write(store, feature_set, snapshot_table(feature_set, 300, DAY))
    assert backfill.skipped and backfill.generation is None
    assert store.current_generation(fresh=True).id == second.generation
    # re-loading the same day is allowed (idempotent re-runs)
    again = write(store, feature_set, second_table, day2)
    assert again.generation > second.generation
    assert_serves(store, feature_set, second_table, day2)
    # superseded generations go after their grace period: memory stays bounded
    pattern = f"rf:{feature_set.version}:{first.generation}:*"
    old_keys = list(server.client().scan_iter(pattern))
    assert old_keys and wait_until_gone(server.client(), old_keys)


def test_a_generation_past_its_ttl_is_never_served(feature_set, server):
    store = OnlineStore(server.client(), feature_set.version, ttl_s=1)
    write(store, feature_set, snapshot_table(feature_set, 30, DAY))
    assert not isinstance(store.get("c000000001"), Missing)
    keys = list(server.client().scan_iter(f"rf:{feature_set.version}:1:*"))
    time.sleep(1.2)
    assert store.get("c000000001") == Missing("c000000001", "expired")
    assert store.get_many(["c000000001"]) == [Missing("c000000001", "expired")]
    assert keys and wait_until_gone(server.client(), keys)  # Redis dropped them too


def test_a_failing_input_leaves_the_previous_generation_serving(feature_set, server):
    store = OnlineStore(server.client(), feature_set.version, chunk_rows=50)
    table = snapshot_table(feature_set, 200, DAY)
    write(store, feature_set, table)
    bad = with_digests(snapshot_table(feature_set, 200, DAY + timedelta(days=1), seed=3))
    bad = bad.set_column(
        bad.schema.get_field_index("lifecycle_stage"),
        "lifecycle_stage",
        pa.array(["new"] * 150 + ["zombie"] * 50),
    )
    with pytest.raises(OnlineStoreError, match=r"zombie.*generation 1 .* keeps serving"):
        store.write_generation(
            bad.to_batches(50),
            feature_set=feature_set,
            as_of=as_of_time(DAY + timedelta(days=1)),
            customers=200,
        )
    assert_serves(store, feature_set, table)
    # the half-written generation was removed
    assert not list(server.client().scan_iter(f"rf:{feature_set.version}:2:*"))


def test_killing_redis_mid_materialization_keeps_the_previous_generation(feature_set, tmp_path):
    """Production persistence (append-only file, fsync every second); kill -9 while a new
    generation is half-written; after the restart every read is of the complete old one."""
    server = LocalRedis(tmp_path / "redis").start()
    try:
        store = OnlineStore(server.client(), feature_set.version, chunk_rows=500)
        old = snapshot_table(feature_set, 3000, DAY)
        write(store, feature_set, old)
        time.sleep(1.5)  # the fsync of the append-only file (everysec)
        new = with_digests(snapshot_table(feature_set, 3000, DAY + timedelta(days=1), seed=5))

        def batches_then_crash():
            for i, batch in enumerate(new.to_batches(500)):
                if i == 3:
                    server.kill()
                yield batch

        with pytest.raises(OnlineStoreError, match=r"keeps serving|did not answer|connection"):
            store.write_generation(
                batches_then_crash(),
                feature_set=feature_set,
                as_of=as_of_time(DAY + timedelta(days=1)),
                customers=new.num_rows,
            )
        server.start()
        reader = OnlineStore(server.client(), feature_set.version)
        assert reader.current_generation().as_of == as_of_time(DAY)
        assert_serves(reader, feature_set, old)  # all 3000: no record of the new generation
    finally:
        server.kill()


def test_readers_never_see_a_mix_of_generations(feature_set, server):
    days = [DAY + timedelta(days=i) for i in range(6)]
    tables = {d: snapshot_table(feature_set, 2000, d, seed=d.day) for d in days}
    codec = RecordCodec(feature_set)
    expected = {
        d: {
            cid: row
            for cid, row in zip(t["customer_id"].to_pylist(), codec.feature_matrix(t), strict=True)
        }
        for d, t in tables.items()
    }
    writer = OnlineStore(server.client(), feature_set.version, superseded_ttl_s=60)
    write(writer, feature_set, tables[days[0]], days[0])
    reader = OnlineStore(server.client(), feature_set.version, pointer_cache_s=0)
    ids = tables[days[0]]["customer_id"].to_pylist()
    problems, reads, stop = [], [0], threading.Event()

    def read_continuously():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            batch = list(rng.choice(ids, 50, replace=False))
            records = reader.get_many(batch)
            as_ofs = {r.as_of for r in records}
            if len(as_ofs) != 1:
                problems.append(f"mixed as_of {as_ofs}")
            for r in records:
                want = expected[r.as_of.date()][r.customer_id]
                if r.features.tobytes() != want.tobytes():
                    problems.append(f"{r.customer_id} differs from its as_of {r.as_of}")
            reads[0] += 1

    thread = threading.Thread(target=read_continuously)
    thread.start()
    try:
        for day in days[1:]:
            write(writer, feature_set, tables[day], day, batch_rows=400)
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 10 and not problems, problems[:5]


def test_a_redis_cluster_serves_the_same(feature_set, tmp_path):
    nodes = start_cluster(tmp_path / "cluster")
    try:
        url = ",".join(n.url for n in nodes)
        store = OnlineStore(connect(url, cluster=True), feature_set.version)
        table = snapshot_table(feature_set, 3000, DAY)
        report = write(store, feature_set, table, batch_rows=1000)
        assert report.customers == 3000
        assert_serves(store, feature_set, table)
        per_node = [n.client().dbsize() for n in nodes]
        assert all(n > 0 for n in per_node), per_node  # buckets spread over the nodes
        newer = snapshot_table(feature_set, 2000, DAY + timedelta(days=1), seed=9)
        write(store, feature_set, newer, DAY + timedelta(days=1))
        assert_serves(store, feature_set, newer, DAY + timedelta(days=1))
    finally:
        for node in nodes:
            node.kill()


def test_passwords_and_acl_users(feature_set, tmp_path):
    with LocalRedis(tmp_path / "redis", extra_args=("--requirepass", "s3cret")) as server:
        admin = connect(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        admin.execute_command("ACL", "SETUSER", "scorer", "on", ">pw", "~rf:*", "+@all")
        table = snapshot_table(feature_set, 100, DAY)
        write(OnlineStore(admin, feature_set.version), feature_set, table)
        user = connect(f"redis://scorer:pw@127.0.0.1:{server.port}/0")
        assert_serves(OnlineStore(user, feature_set.version), feature_set, table)
        wrong = OnlineStore(
            connect(f"redis://:nope@127.0.0.1:{server.port}/0"), feature_set.version
        )
        with pytest.raises(OnlineStoreError, match="rejected the credentials") as failure:
            write(wrong, feature_set, snapshot_table(feature_set, 100, DAY + timedelta(days=1)))
        assert "nope" not in str(failure.value)
        assert_serves(OnlineStore(admin, feature_set.version), feature_set, table)


def test_an_unreachable_server_is_a_clear_error(feature_set):
    from resources.local_redis import free_port

    store = OnlineStore(
        connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5),
        feature_set.version,
    )
    with pytest.raises(OnlineStoreUnavailable, match="did not answer"):
        store.get("c1")
    with pytest.raises(OnlineStoreError, match="did not answer"):
        write(store, feature_set, snapshot_table(feature_set, 10, DAY))


def test_full_memory_fails_clearly_and_keeps_the_previous_generation(feature_set, tmp_path):
    args = ("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    with LocalRedis(tmp_path / "redis", extra_args=args) as server:
        store = OnlineStore(server.client(), feature_set.version)
        small = snapshot_table(feature_set, 500, DAY)
        write(store, feature_set, small)
        big = snapshot_table(feature_set, 30_000, DAY + timedelta(days=1), seed=4)
        # the estimate says it cannot fit: nothing is written
        with pytest.raises(
            OnlineStoreError, match=r"short of memory.*generation 1 .*keeps serving"
        ):
            write(store, feature_set, big)
        # without the estimate, Redis refuses part-way: the partial generation is removed
        with pytest.raises(OnlineStoreError, match=r"out of memory.*generation 1 .*keeps serving"):
            write(store, feature_set, big, batch_rows=5000, check_memory=False)
        assert_serves(store, feature_set, small)
        assert not list(server.client().scan_iter(f"rf:{feature_set.version}:3:*"))


def test_tls_urls(feature_set, tmp_path):
    cert, key = self_signed_certificate(tmp_path / "tls")
    from resources.local_redis import free_port

    port = free_port()
    args = (
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    )
    tls = {"ssl": True, "ssl_ca_certs": str(cert)}
    server = LocalRedis(tmp_path / "redis", port=port, extra_args=args, client_options=tls)
    try:
        server.start()
    except RuntimeError as exc:  # exits at once on an unknown option
        pytest.skip(f"this redis-server has no TLS support: {exc}")
    try:
        store = OnlineStore(
            connect(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"), feature_set.version
        )
        table = snapshot_table(feature_set, 100, DAY)
        write(store, feature_set, table)
        assert_serves(store, feature_set, table)
    finally:
        server.kill()


def test_drop_removes_every_key_of_a_feature_set(feature_set, server):
    store = OnlineStore(server.client(), feature_set.version)
    write(store, feature_set, snapshot_table(feature_set, 500, DAY))
    other = OnlineStore(server.client(), "fs_other")
    server.client().set("rf:fs_other:layout", "{}")
    assert store.drop() > 0
    assert not list(server.client().scan_iter(f"rf:{feature_set.version}:*"))
    assert server.client().exists(other.prefix + ":layout")


def test_decimal_amounts_keep_their_value_as_float32(feature_set):
    """The dtype serving decodes is float32: what training must see too."""
    table = snapshot_table(feature_set, 3, DAY)
    i = table.schema.get_field_index("amount_sum_30d")
    table = table.set_column(
        i,
        "amount_sum_30d",
        pa.array([Decimal("0.10"), Decimal("12345678.91"), None], pa.decimal128(18, 2)),
    )
    column = [c.name for c in feature_set.features].index("amount_sum_30d")
    got = RecordCodec(feature_set).feature_matrix(table)[:, column]
    assert got[0] == np.float32(0.1) and got[1] == np.float32(12345678.91) and np.isnan(got[2])


def test_an_operator_rolls_a_bad_snapshot_back_and_nothing_loads_it_again(feature_set, server):
    """Within the rollback window the replaced generation serves again at once; the bad as_of
    is pinned (a re-run or the refill sensor does not load it again; a newer snapshot does)."""
    store = OnlineStore(server.client(), feature_set.version, superseded_ttl_s=600)
    day2, day3 = DAY + timedelta(days=1), DAY + timedelta(days=2)
    good = snapshot_table(feature_set, 300, DAY)
    first = write(store, feature_set, good)
    bad = write(store, feature_set, snapshot_table(feature_set, 120, day2, seed=9), day2)
    restored, rolled_back = store.roll_back("half the customers lost their history")
    assert (restored.id, rolled_back.id) == (first.generation, bad.generation)
    assert_serves(store, feature_set, good)  # every record of the good snapshot, as it was
    assert store.pinned()["reason"] == "half the customers lost their history"
    again = write(store, feature_set, snapshot_table(feature_set, 120, day2, seed=9), day2)
    assert again.skipped and "rolled back by an operator" in again.skipped
    assert store.current_generation(fresh=True).id == first.generation
    with pytest.raises(OnlineStoreError, match="no previous generation"):
        store.roll_back("twice")  # one step back, not a history
    newer = snapshot_table(feature_set, 300, day3, seed=3)
    assert write(store, feature_set, newer, day3).generation is not None
    assert_serves(store, feature_set, newer, day3)


_KILLED_LOAD = """
import sys, time
from datetime import date

from featurestore.registry import load_feature_set
from riskcore.timestamps import as_of_time
from riskcore.codec import with_digests
from riskcore.online_store import OnlineStore, connect
from tests.snapshot_tables import snapshot_table

url, day = sys.argv[1], date.fromisoformat(sys.argv[2])
fs = load_feature_set()
table = with_digests(snapshot_table(fs, 3000, day, seed=7))


def slowly():
    for batch in table.to_batches(100):
        yield batch
        print("batch", flush=True)  # the previous batches are in Redis
        time.sleep(0.2)


OnlineStore(connect(url), fs.version, chunk_rows=100).write_generation(
    slowly(), feature_set=fs, as_of=as_of_time(day), customers=table.num_rows
)
print("done", flush=True)
"""


def test_the_next_load_removes_the_partial_generation_of_a_load_killed_half_way(
    feature_set, server
):
    """A load in another process is killed -9 half way: its records stay in Redis with the full
    TTL, and nobody is left to remove them. The next load does: afterwards only the serving and
    the previous generation have records, and the serving one is complete."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from riskcore.settings import PROJECT_ROOT

    store = OnlineStore(server.client(), feature_set.version)
    day2, day3 = DAY + timedelta(days=1), DAY + timedelta(days=2)
    first = write(store, feature_set, snapshot_table(feature_set, 2000, DAY))
    loader = subprocess.Popen(
        [sys.executable, "-c", _KILLED_LOAD, server.url, day2.isoformat()],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(5):  # 500 of its 3000 customers written
            assert loader.stdout.readline() == "batch\n"
    finally:
        os.kill(loader.pid, signal.SIGKILL)
        loader.wait()
    client = server.client()
    prefix = f"rf:{feature_set.version}"
    partial = first.generation + 1
    left = list(client.scan_iter(f"{prefix}:{partial}:*"))
    assert left and client.ttl(left[0]) > 86_400  # what the kill left: full TTL
    assert store.current_generation(fresh=True).id == first.generation  # never flipped

    table = snapshot_table(feature_set, 2000, day3, seed=3)
    report = write(store, feature_set, table, day3)
    assert report.stray_generations == [partial]
    generations = {
        int(m[1])
        for key in client.scan_iter(count=1000)  # the whole keyspace
        if (m := re.fullmatch(rf"{prefix}:(\d+):\d+", key.decode()))
    }
    assert generations == {first.generation, report.generation}  # the previous lingers
    assert not client.exists(store.loading_key)
    serving = store.current_generation(fresh=True)
    assert serving.id == report.generation and serving.customers == 2000
    keys = [store.bucket_key(serving.id, b) for b in range(1 << serving.bucket_bits)]
    assert sum(client.hlen(k) for k in keys) == 2000
    assert_serves(store, feature_set, table, day3)
