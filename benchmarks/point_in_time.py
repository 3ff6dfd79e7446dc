"""Benchmark: the training set's point-in-time join against a hand-written DuckDB query.

    python -m benchmarks.point_in_time                       # 1M purchases x 30 snapshots
    python -m benchmarks.point_in_time --purchases 200000    # a quick look

Same data, same process, alternating runs (medians of --rounds): ``joined_purchases`` (what
the training set runs: purchases and snapshots read from Delta, the ASOF join on
``available_at``, the equality join on customer, the labels known by the cutoff, and the
real-time features of each purchase over the week of events before it) against the bare query
with the snapshot join's semantics over the same Delta tables (an ``ASOF JOIN`` on
``available_at``, then an equality join on customer, labels joined alike), and the SDK's
``historical_features`` on the same purchases (the snapshot join alone, in input order, as
float32). The first against the third separates the real-time features' cost from the join's.
"""

import argparse
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FIRST = date(2026, 3, 1)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(root: Path, purchases: int, customers: int, days: int):
    from featurestore.registry import load_feature_set
    from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS, Lakehouse
    from tests.snapshot_tables import cents_to_decimal, snapshot_table

    fs = load_feature_set()
    lakehouse = Lakehouse(root_uri=str(root))
    rng = np.random.default_rng(0)
    for d in range(days + 1):
        day = FIRST + timedelta(days=d)
        lakehouse.replace_partitions(
            CUSTOMER_FEATURES,
            snapshot_table(fs, customers, day, seed=d),
            ["as_of_date"],
            f"as_of_date = '{day}'",
        )
    seconds = np.sort(rng.integers(0, days * 86_400, purchases))
    start = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC)
    ts = pa.array(start.timestamp() * 1e6 + seconds * 1e6, pa.int64()).cast(
        pa.timestamp("us", "UTC")
    )
    table = pa.table(
        {
            "transaction_id": [f"t{i}" for i in range(purchases)],
            "customer_id": [f"c{i:09d}" for i in rng.integers(0, int(customers * 1.1), purchases)],
            "event_ts": ts,
            "amount": cents_to_decimal(rng.integers(100, 100_000, purchases)),
            "currency": pa.array(["EUR"] * purchases),
            "merchant_id": pa.array(["m"] * purchases),
            "merchant_category": rng.choice(["grocery", "crypto", "travel"], purchases),
            "channel": rng.choice(["online", "pos", "app"], purchases),
            "device_id": rng.choice(["d1", "d2"], purchases),
            "country": ["DE"] * purchases,
            "installments": pa.array(rng.choice([1, 3], purchases), pa.int16()),
            "card_hash": ["0" * 64] * purchases,
        }
    )
    days_of = pc.cast(table["event_ts"], pa.date32())
    for d in range(days):
        day = FIRST + timedelta(days=d)
        lakehouse.replace_day(TRANSACTIONS, table.filter(pc.equal(days_of, day)), "event_date", day)
    fraud = table.slice(0, purchases // 100)
    labels = pa.table(
        {
            "transaction_id": fraud["transaction_id"],
            "label": ["fraud"] * len(fraud),
            "label_ts": fraud["event_ts"],
        }
    )
    lakehouse.replace_day(LABELS, labels, "label_date", FIRST + timedelta(days=days))
    return lakehouse, fs


def bare_query(lakehouse, fs, window) -> pa.Table:
    """The same semantics written by hand: ASOF on available_at, then customer equality."""
    from resources.lakehouse import CUSTOMER_FEATURES, LABELS, TRANSACTIONS

    columns = [c.name for c in fs.features + fs.context]
    lag_us = int(window.availability_lag.total_seconds() * 1e6)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        t = lakehouse.dataset(TRANSACTIONS)  # noqa: F841
        s = lakehouse.dataset(CUSTOMER_FEATURES)  # noqa: F841
        labels = lakehouse.dataset(LABELS)  # noqa: F841
        return con.sql(
            f"""
            with p as (select distinct as_of, as_of + to_microseconds({lag_us}) as available_at
                       from s),
            tx as (select * from t where event_date between $first and $last),
            chosen as (select tx.*, p.as_of as snapshot_as_of from tx
                       asof left join p on tx.event_ts >= p.available_at),
            known as (select transaction_id, bool_or(label = 'fraud') as fraud
                      from labels where label_ts <= $cutoff group by all)
            select chosen.*, {", ".join("s." + c for c in columns)}, known.fraud
            from chosen
            left join s on s.as_of = chosen.snapshot_as_of and s.customer_id = chosen.customer_id
            left join known using (transaction_id)
            """,
            params={"first": window.first_day, "last": window.last_day, "cutoff": window.cutoff},
        ).to_arrow_table()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from assets.training.dataset import TrainingWindow, joined_purchases
    from featurestore import historical_features
    from resources.lakehouse import TRANSACTIONS

    with tempfile.TemporaryDirectory() as tmp:
        _log(
            f"writing {args.purchases:,} purchases and {args.days + 1} snapshots of "
            f"{args.customers:,} customers to Delta"
        )
        lakehouse, fs = build(Path(tmp), args.purchases, args.customers, args.days)
        window = TrainingWindow(
            FIRST,
            FIRST + timedelta(days=args.days - 1),
            datetime(2026, 6, 1, tzinfo=UTC),
        )
        purchases = lakehouse.dataset(TRANSACTIONS).to_table(
            columns=["transaction_id", "customer_id", "event_ts"]
        )
        ours, bare, sdk = [], [], []
        for i in range(args.rounds):
            began = time.perf_counter()
            joined = joined_purchases(lakehouse, fs, window)
            ours.append(time.perf_counter() - began)
            began = time.perf_counter()
            reference = bare_query(lakehouse, fs, window)
            bare.append(time.perf_counter() - began)
            began = time.perf_counter()
            joined_sdk = historical_features(
                purchases, lag=window.availability_lag, lakehouse=lakehouse
            )
            sdk.append(time.perf_counter() - began)
            _log(
                f"round {i + 1}: training join {ours[-1]:.2f} s, bare ASOF query "
                f"{bare[-1]:.2f} s, SDK {sdk[-1]:.2f} s"
            )
        assert joined.num_rows == reference.num_rows == joined_sdk.num_rows == args.purchases
        assert (
            pc.sum(joined["customer_known"]).as_py()
            == pc.sum(pc.is_valid(reference["txn_count_1d"])).as_py()
        )
        per_row_us, column_us = transaction_features_both_ways(joined, fs, args.rounds)
    m_ours, m_bare, m_sdk = (statistics.median(x) for x in (ours, bare, sdk))
    print(
        f"\npoint-in-time join of {args.purchases:,} purchases: bare DuckDB ASOF query "
        f"{m_bare:.2f} s [{min(bare):.2f}-{max(bare):.2f}]; the SDK's join "
        f"{m_sdk:.2f} s [{min(sdk):.2f}-{max(sdk):.2f}]: {m_sdk / m_bare:.2f}x (goal <= 1.3x); "
        f"the training join with real-time features {m_ours:.2f} s "
        f"[{min(ours):.2f}-{max(ours):.2f}]: {m_ours / m_bare:.2f}x"
    )
    print(
        f"transaction-time features of the joined purchases: column-wise "
        f"{column_us:.2f} us a purchase, one at a time as serving computes them (records "
        f"decoded, then the row function) {per_row_us:.2f} us: {per_row_us / column_us:.0f}x "
        "faster, equal bit for bit"
    )


def transaction_features_both_ways(joined: pa.Table, fs, rounds: int) -> tuple[float, float]:
    """us a purchase of the training set's transaction-time features: column-wise over every
    purchase (``transaction_feature_columns``), and one purchase at a time (its record encoded
    and decoded as serving reads it, then ``transaction_features``, as the training set was
    built before) on the first 100k; medians of ``rounds``; the two compared bit for bit."""
    from assets.training.dataset import TRANSACTION_COLUMNS, vocabularies
    from riskcore.codec import RecordCodec
    from riskcore.transaction_features import (
        Purchases,
        Snapshots,
        transaction_feature_columns,
        transaction_features,
    )

    codec, vocab = RecordCodec(fs), vocabularies(joined)
    sample = joined.slice(0, 100_000)
    columns, rows = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        matrix = transaction_feature_columns(
            Purchases.of_table(joined),
            Snapshots.of_table(joined, codec.feature_matrix(joined), codec),
            vocab,
        )
        columns.append((time.perf_counter() - began) / joined.num_rows * 1e6)
        began = time.perf_counter()
        known = pc.fill_null(sample["customer_known"], False).to_numpy(zero_copy_only=False)
        snapshots = sample.filter(pa.array(known)).rename_columns(
            ["as_of" if n == "snapshot_as_of" else n for n in sample.column_names]
        )
        records = iter(
            codec.decode(c, v)
            for c, v in zip(
                snapshots["customer_id"].to_pylist(), codec.encode(snapshots), strict=True
            )
        )
        one_by_one = np.array(
            [
                transaction_features(txn, next(records) if is_known else None, vocab)
                for txn, is_known in zip(
                    sample.select(TRANSACTION_COLUMNS).to_pylist(), known, strict=True
                )
            ]
        )
        rows.append((time.perf_counter() - began) / sample.num_rows * 1e6)
    head = matrix[: sample.num_rows]
    assert ((head == one_by_one) | (np.isnan(head) & np.isnan(one_by_one))).all()
    _log(f"transaction features: column-wise {columns} us, one at a time {rows} us")
    return statistics.median(rows), statistics.median(columns)


if __name__ == "__main__":
    main()
