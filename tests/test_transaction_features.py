"""Transaction-time features in their two shapes: ``transaction_feature_columns`` over a whole
point-in-time joined table (how the training set is built) equals ``transaction_features`` of
each purchase with its customer's record as serving decodes it, bit for bit, on random
purchases and snapshots (time zones, unseen categories, missing devices and countries, zero,
negative and null means, null and empty device lists, unknown customers)."""

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from riskcore.codec import RecordCodec
from riskcore.transaction_features import (
    TRANSACTION_FEATURES,
    Purchases,
    Snapshots,
    transaction_feature_columns,
    transaction_features,
)
from tests.snapshot_tables import snapshot_table

VOCAB = {"channel": ("app", "online", "pos"), "merchant_category": ("crypto", "grocery")}
DEVICES = ["d1", "d2", "d3", ""]
AS_OF = date(2026, 3, 2)

purchase = st.fixed_dictionaries(
    {
        "event_ts": st.datetimes(datetime(2026, 3, 1), datetime(2026, 4, 1)).map(
            lambda d: d.replace(tzinfo=timezone(timedelta(hours=5, minutes=30)))
        )
        | st.datetimes(datetime(2026, 3, 1), datetime(2026, 4, 1), timezones=st.just(UTC)),
        "amount": st.decimals(Decimal("0.01"), Decimal("99999.99"), places=2),
        "channel": st.sampled_from(["app", "online", "pos", "carrier pigeon", None]),
        "merchant_category": st.sampled_from(["crypto", "grocery", "unseen"]),
        "installments": st.integers(1, 12),
        "country": st.sampled_from(["DE", "FR", "US"]),
        "device_id": st.sampled_from([*DEVICES, None]),
    }
)
snapshot = (
    st.none()
    | st.fixed_dictionaries(  # None: a customer the snapshot does not know
        {
            "amount_mean_30d": st.one_of(st.none(), st.just(0.0), st.floats(-5, 5000)),
            "days_since_last_txn": st.one_of(st.none(), st.floats(0, 400)),
            "days_since_first_txn": st.one_of(st.none(), st.floats(0, 4000)),
            "home_country": st.sampled_from([None, "DE", "FR"]),
            "known_devices": st.one_of(
                st.none(), st.lists(st.sampled_from(DEVICES[:3]), max_size=3)
            ),
        }
    )
)


def _joined(feature_set, rows: list[tuple[dict, dict | None]]) -> pa.Table:
    """What the training join hands the features: purchases beside their snapshot (random
    for the features not drawn), null where the customer is unknown."""
    base = snapshot_table(feature_set, len(rows), AS_OF, seed=len(rows))
    known = [s is not None for _, s in rows]
    columns = {}
    for name in base.column_names:
        if name in ("as_of", "as_of_date"):  # the join names it snapshot_as_of
            continue
        drawn = [s.get(name) if s is not None else None for _, s in rows]
        if any(s is not None and name in s for _, s in rows):
            column = pa.array(drawn, base[name].type)
        else:  # unknown customers' snapshot columns are null after the left join
            column = pa.array(
                [v if k else None for v, k in zip(base[name].to_pylist(), known, strict=True)],
                base[name].type,
            )
        columns[name] = column
    columns["customer_id"] = pa.array([f"c{i}" for i in range(len(rows))])
    columns["customer_known"] = pa.array(known)
    columns["snapshot_as_of"] = pa.array(
        [datetime(2026, 3, 2, tzinfo=UTC) if k else None for k in known],
        pa.timestamp("us", "UTC"),
    )
    for name in ("event_ts", "amount", "channel", "merchant_category", "installments", "country"):
        columns[name] = pa.array([p[name] for p, _ in rows])
    columns["device_id"] = pa.array([p["device_id"] for p, _ in rows], pa.string())
    columns["event_ts"] = columns["event_ts"].cast(pa.timestamp("us", "UTC"))
    columns["amount"] = columns["amount"].cast(pa.decimal128(18, 2))
    columns["installments"] = columns["installments"].cast(pa.int16())
    return pa.table(columns)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        (x != x and y != y) or x == y for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(purchase, snapshot), min_size=1, max_size=12))
def test_the_column_function_equals_the_row_function_on_every_purchase(feature_set, rows):
    codec = RecordCodec(feature_set)
    joined = _joined(feature_set, rows)
    features = codec.feature_matrix(joined)
    batch = transaction_feature_columns(
        Purchases.of_table(joined), Snapshots.of_table(joined, features, codec), VOCAB
    )
    assert batch.shape == (len(rows), len(TRANSACTION_FEATURES))
    # Serving's side: each known customer's record encoded for Redis and decoded back.
    known = joined.filter(joined["customer_known"])
    snapshots = known.rename_columns(
        ["as_of" if n == "snapshot_as_of" else n for n in known.column_names]
    )
    records = iter(
        codec.decode(c, v)
        for c, v in zip(known["customer_id"].to_pylist(), codec.encode(snapshots), strict=True)
    )
    for i, (txn, drawn) in enumerate(rows):
        record = next(records) if drawn is not None else None
        served = transaction_features(txn, record, VOCAB).tolist()
        assert _same(batch[i].tolist(), served), (i, batch[i].tolist(), served)


def test_unknown_customers_need_no_snapshots():
    txn = {
        "event_ts": datetime(2026, 3, 2, 23, 30, tzinfo=UTC),  # a Monday
        "amount": Decimal("12.50"),
        "channel": "pos",
        "merchant_category": "grocery",
        "installments": 3,
        "country": "DE",
        "device_id": None,
    }
    table = pa.table({k: [v] for k, v in txn.items()}).set_column(
        6, "device_id", pa.array([None], pa.string())
    )
    row = transaction_feature_columns(Purchases.of_table(table), None, VOCAB)[0]
    assert row[:7].tolist() == [12.5, math.log1p(12.5), 23, 0, 2.0, 1.0, 3.0]
    assert np.isnan(row[7:]).all()
    assert _same(row.tolist(), transaction_features(txn, None, VOCAB).tolist())
