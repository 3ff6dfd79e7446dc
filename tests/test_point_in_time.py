"""The point-in-time join against a brute-force oracle, its boundary, and training/serving
parity: the training row of a purchase equals what serving computes for it from Redis."""

import math
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.training.dataset import (
    TRANSACTION_COLUMNS,
    TrainingWindow,
    build_training_set,
    table_vocabularies,
)
from featurestore.point_in_time import point_in_time_sql
from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse
from resources.local_redis import LocalRedis
from riskcore.codec import with_digests
from riskcore.online_store import OnlineStore
from riskcore.transaction_features import TRANSACTION_FEATURES, transaction_features

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def oracle(transactions: list[dict], snapshots: list[dict], lag: timedelta) -> list[dict]:
    """For each purchase: the partition with the greatest as_of + lag <= event_ts, and the
    customer's row in that partition (None when absent): plain Python, no joins."""
    out = []
    partitions = sorted({s["as_of"] for s in snapshots})
    for t in transactions:
        usable = [p for p in partitions if p + lag <= t["event_ts"]]
        chosen = usable[-1] if usable else None
        row = next(
            (s for s in snapshots if s["as_of"] == chosen and s["customer_id"] == t["customer_id"]),
            None,
        )
        out.append(
            {
                "transaction_id": t["transaction_id"],
                "snapshot_as_of": chosen,
                "value": None if row is None else row["value"],
            }
        )
    return out


def run_sql(
    transactions: list[dict], snapshots: list[dict], lag: timedelta, loads: list[dict] | None = None
) -> list[dict]:
    tx = pa.Table.from_pylist(  # noqa: F841  (DuckDB reads it by name)
        transactions,
        pa.schema(
            [
                ("transaction_id", pa.string()),
                ("customer_id", pa.string()),
                ("event_ts", pa.timestamp("us", "UTC")),
            ]
        ),
    )
    snap = pa.Table.from_pylist(  # noqa: F841
        snapshots,
        pa.schema(
            [
                ("customer_id", pa.string()),
                ("as_of", pa.timestamp("us", "UTC")),
                ("value", pa.int64()),
            ]
        ),
    )
    loaded_at = {r["as_of"]: r["available_at"] for r in loads or []}
    as_ofs = sorted({s["as_of"] for s in snapshots})
    partitions = pa.table(  # noqa: F841  (as featurestore/historical.py computes them)
        {
            "as_of": pa.array(as_ofs, pa.timestamp("us", "UTC")),
            "available_at": pa.array(
                [max(a + lag, loaded_at.get(a, a + lag)) for a in as_ofs],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    sql = point_in_time_sql(["value"], "tx", "snap", "partitions")
    rows = con.sql(sql).fetchall()
    names = [d[0] for d in con.sql(sql).description]
    got = [dict(zip(names, r, strict=True)) for r in rows]
    return sorted(
        (
            {
                "transaction_id": g["transaction_id"],
                "snapshot_as_of": g["snapshot_as_of"],
                "value": g["value"],
            }
            for g in got
        ),
        key=lambda g: g["transaction_id"],
    )


@st.composite
def histories(draw):
    customers = ["a", "b", "ü"]
    days = draw(st.lists(st.integers(0, 6), unique=True, max_size=5))  # missing days allowed
    snapshots = [
        {"customer_id": c, "as_of": T0 + timedelta(days=d), "value": d * 10 + i}
        for d in days
        for i, c in enumerate(customers)
        if draw(st.booleans())  # a customer may be absent from a partition
    ]
    lag = timedelta(hours=draw(st.sampled_from([0, 6, 30])))
    as_ofs = sorted({s["as_of"] for s in snapshots})
    edges = [p + lag + delta for p in as_ofs for delta in (-US, timedelta(0), US)]
    times = draw(
        st.lists(
            st.one_of(
                st.sampled_from(edges) if edges else st.nothing(),
                st.integers(-86_400, 9 * 86_400).map(lambda s: T0 + timedelta(seconds=s)),
            ),
            min_size=1,
            max_size=25,
        )
    )
    transactions = [
        {
            "transaction_id": f"t{i:03d}",
            "customer_id": draw(st.sampled_from(customers)),
            "event_ts": at,
        }
        for i, at in enumerate(times)
    ]
    return transactions, snapshots, lag


@settings(max_examples=200, deadline=None)
@given(histories())
def test_point_in_time_join_matches_the_oracle(history):
    transactions, snapshots, lag = history
    assert run_sql(transactions, snapshots, lag) == oracle(transactions, snapshots, lag)


def test_the_boundary_is_inclusive_to_the_microsecond():
    """A snapshot available exactly at the purchase is used; one available a microsecond
    later is not."""
    lag = timedelta(hours=6)
    snapshots = [
        {"customer_id": "a", "as_of": T0, "value": 1},
        {"customer_id": "a", "as_of": T0 + timedelta(days=1), "value": 2},
    ]
    at = T0 + timedelta(days=1) + lag
    transactions = [
        {"transaction_id": "at", "customer_id": "a", "event_ts": at},
        {"transaction_id": "before", "customer_id": "a", "event_ts": at - US},
    ]
    got = {g["transaction_id"]: g["value"] for g in run_sql(transactions, snapshots, lag)}
    assert got == {"at": 2, "before": 1}


def test_a_customer_absent_from_the_chosen_partition_gets_no_older_row():
    snapshots = [
        {"customer_id": "a", "as_of": T0, "value": 1},
        {"customer_id": "b", "as_of": T0 + timedelta(days=1), "value": 2},
    ]
    transactions = [{"transaction_id": "t", "customer_id": "a", "event_ts": T0 + timedelta(days=2)}]
    (got,) = run_sql(transactions, snapshots, timedelta(0))
    assert got["snapshot_as_of"] == T0 + timedelta(days=1) and got["value"] is None


@pytest.mark.integration
def test_the_training_row_equals_what_serving_computes(feature_set, tmp_path):
    """Snapshot in Delta -> training set; the same snapshot in Redis -> serving's record and
    serving's transaction features: the two vectors are equal, value for value."""
    from tests.snapshot_tables import snapshot_table

    lakehouse = Lakehouse(root_uri=str(tmp_path / "lakehouse"))
    as_of_day = date(2026, 3, 2)
    snapshot = snapshot_table(feature_set, 300, as_of_day, seed=11)
    lakehouse.replace_partitions(
        CUSTOMER_FEATURES, snapshot, ["as_of_date"], f"as_of_date = '{as_of_day}'"
    )
    rng = np.random.default_rng(3)
    customers = [f"c{i:09d}" for i in rng.integers(0, 400, 200)]  # some unknown to the snapshot
    purchases = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(200)],
            "customer_id": customers,
            "event_ts": pa.array(
                [
                    datetime(2026, 3, 2, 7, tzinfo=UTC) + timedelta(minutes=int(m))
                    for m in rng.integers(0, 900, 200)
                ],
                pa.timestamp("us", "UTC"),
            ),
            "amount": pa.array([f"{a:.2f}" for a in rng.lognormal(3, 1, 200)]).cast(
                pa.decimal128(18, 2)
            ),
            "merchant_id": rng.choice(["m1", "m2"], 200),
            "merchant_category": rng.choice(["grocery", "crypto", "travel"], 200),
            "channel": rng.choice(["online", "pos", "app"], 200),
            "device_id": rng.choice(["dev-1", None, "dev-2"], 200),
            "country": rng.choice(["US", "DE"], 200),
            "installments": pa.array(rng.choice([1, 3], 200), pa.int16()),
            "card_hash": ["ab" * 32] * 200,
        }
    )
    lakehouse.replace_day(TRANSACTIONS, purchases, "event_date", date(2026, 3, 2))
    label_ts = pa.array([T0 + timedelta(days=5)], pa.timestamp("us", "UTC"))
    labels = pa.table({"transaction_id": ["t1"], "label": ["fraud"], "label_ts": label_ts})
    lakehouse.replace_day(LABELS, labels, "label_date", date(2026, 3, 6))
    window = TrainingWindow(date(2026, 3, 2), date(2026, 3, 2), T0 + timedelta(days=30))
    training = build_training_set(lakehouse, feature_set, window)
    vocab = table_vocabularies(training)

    with LocalRedis(tmp_path / "redis") as server:
        store = OnlineStore(server.client(), feature_set.version)
        store.write_generation(
            [with_digests(snapshot)],
            feature_set=feature_set,
            as_of=datetime(2026, 3, 2, tzinfo=UTC),
            customers=300,
        )
        rows = {r["transaction_id"]: r for r in training.to_pylist()}
        for txn in purchases.select(TRANSACTION_COLUMNS).to_pylist():
            found = store.get(txn["customer_id"])
            record = None if hasattr(found, "reason") else found
            row = rows[txn["transaction_id"]]
            assert row["customer_known"] == (record is not None)
            served = list(transaction_features(txn, record, vocab))
            trained = [row[name] for name in TRANSACTION_FEATURES]
            assert _same(served, trained), txn["transaction_id"]
            snapshot_trained = [row[c.name] for c in feature_set.features]
            snapshot_served = (
                record.features.tolist() if record else [math.nan] * len(feature_set.features)
            )
            assert _same(snapshot_served, snapshot_trained)
    assert sum(r["customer_known"] for r in rows.values()) > 50
    assert rows["t1"]["fraud_label"] is True


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (x != x and y != y) or x == y for x, y in zip(a, b, strict=True)
    )


@pytest.mark.integration
def test_across_a_snapshot_switch_serving_reads_the_snapshot_training_joins(
    feature_set, tmp_path, monkeypatch
):
    """The next snapshot is loaded at 02:30, before it is available (as_of + the lag training
    assumes): until then serving keeps reading the one before, as the training join does; from
    then on, the new one. A load that ends after that time makes it available when it ends, and
    the training join, given the loads the online asset records, uses that time too."""
    from riskcore import settings as risk_settings
    from tests.snapshot_tables import snapshot_table

    lag = timedelta(hours=risk_settings.load().availability_lag_h)
    days = [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    loaded = [days[0], days[1] + timedelta(hours=2, minutes=30), days[2] + lag + timedelta(hours=1)]
    customer = "c000000007"
    # Purchases scored after each load, until the next one (the clock only moves forward).
    times = [
        [],
        [days[1] + timedelta(hours=h) for h in (3, 5.99, 6, 7, 12, 24 + 5.5, 24 + 6.5)],
        [days[2] + lag + timedelta(hours=h) for h in (1, 2, 12)],
    ]
    snapshots = [{"customer_id": customer, "as_of": d, "value": i} for i, d in enumerate(days)]
    purchases = [
        {"transaction_id": at.isoformat(), "customer_id": customer, "event_ts": at}
        for at in times[1] + times[2]
    ]
    loads, served = [], {}
    with LocalRedis(tmp_path / "redis") as server:
        store = OnlineStore(server.client(), feature_set.version, pointer_cache_s=0)
        for as_of, at, scored in zip(days, loaded, times, strict=True):
            monkeypatch.setenv("RISK_CLOCK", at.isoformat())
            snapshot = snapshot_table(feature_set, 50, as_of.date(), seed=as_of.day)
            report = store.write_generation(
                [with_digests(snapshot)],
                feature_set=feature_set,
                as_of=as_of,
                customers=50,
                available_at=as_of + lag,
            )
            loads.append({"as_of": as_of, "available_at": report.available_at})
            served[as_of] = {}
            for purchase in scored:
                monkeypatch.setenv("RISK_CLOCK", purchase.isoformat())
                served[as_of][purchase.isoformat()] = store.get(customer).as_of
    # The last load ended an hour after its available_at: served from its end. The training
    # join given the loads (as the online asset records them) reads the same; without them it
    # would assume as_of + lag.
    assert report.late_s == 3600 and report.available_at == loaded[2]
    trained = {
        g["transaction_id"]: g["snapshot_as_of"] for g in run_sql(purchases, snapshots, lag, loads)
    }
    assumed = {g["transaction_id"]: g["snapshot_as_of"] for g in run_sql(purchases, snapshots, lag)}
    for as_of in days[1:]:
        for at, snapshot in served[as_of].items():
            assert snapshot == trained[at], (at, snapshot, trained[at])
    late = (days[2] + lag + timedelta(minutes=30)).isoformat()
    assert served[days[1]][late] == trained[late] == days[1] != assumed[late]
