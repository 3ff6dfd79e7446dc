"""The training set: labelled transactions with the snapshot serving had at their time.

Each row is a purchase in the training window, joined point-in-time
(``featurestore/historical.py``) with its customer's snapshot and its device's, merchant's and
card's (by the same availability rule, each over its own table's partitions), passed through
the online codec (float32, as serving decodes it), with the transaction-time features computed
by serving's own function. Two targets share it: ``fraud`` (every purchase) and ``default``
(BNPL purchases, installments > 1). A label is 1 when a label of that kind is known by the
cutoff; a purchase too recent for its label to have matured by the cutoff is left out of that
target (split null), not counted as a negative. The split is by time: the last weeks of each
target's matured window are its test weeks, the weeks before them its validation weeks."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from assets.monitoring.decision_log import read_decisions
from assets.training.realtime import realtime_sql
from featurestore.historical import snapshot_join
from resources.lakehouse import LABELS, TRAINING_SET, TRANSACTIONS, Lakehouse
from riskcore import settings
from riskcore.codec import RecordCodec
from riskcore.feature_set import FeatureSet
from riskcore.realtime import ALL_REALTIME_FEATURES
from riskcore.targets import TARGETS
from riskcore.timestamps import as_of_time
from riskcore.transaction_features import (
    TRANSACTION_FEATURES,
    Purchases,
    Snapshots,
    transaction_feature_columns,
)

TRANSACTION_COLUMNS = [
    "transaction_id",
    "customer_id",
    "event_ts",
    "amount",
    "merchant_category",
    "channel",
    "device_id",
    "country",
    "installments",
    "merchant_id",
    "card_hash",
]


@dataclass(frozen=True)
class TrainingWindow:
    first_day: date  # purchases from this UTC day ...
    last_day: date  # ... to this one, inclusive
    cutoff: datetime  # labels known by then count (label_ts <= cutoff)
    availability_lag: timedelta = timedelta(hours=6)
    maturity_days: dict = field(default_factory=lambda: {"fraud": 45, "default": 90})
    valid_weeks: int = 2
    test_weeks: int = 2

    def matured_until(self, target: str) -> datetime:
        """The last purchase time whose label had matured by the cutoff (and within the
        window): the split counts its weeks back from here."""
        end_of_window = as_of_time(self.last_day) + timedelta(days=1)
        return min(self.cutoff - timedelta(days=self.maturity_days[target]), end_of_window)


def vocabularies(table: pa.Table) -> dict[str, tuple[str, ...]]:
    """The categorical transaction fields' values seen in training, sorted: the codes the
    model learns (logged in its spec; serving maps unseen values to missing)."""
    return {
        name: tuple(sorted(v for v in pc.unique(table[name]).to_pylist() if v is not None))
        for name in ("channel", "merchant_category")
    }


def joined_purchases(
    lakehouse: Lakehouse,
    feature_set: FeatureSet,
    window: TrainingWindow,
    entities: Mapping[str, FeatureSet] = {},
) -> pa.Table:
    """Purchases of the window, point-in-time joined with their customer's snapshot and each
    of ``entities``' (``device_known``, ``device_<feature>``, ...), with their known labels."""
    snapshot_columns = [c.name for c in feature_set.features + feature_set.context]
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        transactions = lakehouse.dataset(TRANSACTIONS)  # noqa: F841  (DuckDB reads it by name)
        labels = lakehouse.dataset(LABELS)  # noqa: F841
        # An id stored twice (a repeat from beyond RISK_DUPLICATE_WINDOW_DAYS) names one
        # purchase: its first copy, so labels and real-time features join to one row.
        con.execute(
            "create temp table window_purchases as select "
            + ", ".join(TRANSACTION_COLUMNS)
            + " from transactions where event_date between $first and $last "
            "qualify row_number() over (partition by transaction_id "
            "order by event_ts, customer_id) = 1",
            {"first": window.first_day, "last": window.last_day},
        )
        known = (
            "select transaction_id, bool_or(label = 'fraud') as fraud, "
            "bool_or(label = 'default') as default_ from labels "
            "where label_ts <= $cutoff group by all"
        )
        span = as_of_time(window.first_day), as_of_time(window.last_day + timedelta(days=1))
        sql = snapshot_join(  # the SDK's road (featurestore/historical.py)
            con, lakehouse, "window_purchases", snapshot_columns, window.availability_lag, *span
        )
        for entity, entity_set in entities.items():  # each entity's join over the one before
            names = [c.name for c in entity_set.features]
            sql = snapshot_join(
                con, lakehouse, f"({sql})", names, window.availability_lag, *span, entity=entity
            )
        # Every raw purchase is an event of the real-time state; a week before the window
        # covers its longest look-back.
        con.execute(
            "create temp table recent_events as select transaction_id, customer_id, event_ts, "
            "amount, merchant_id, device_id from transactions "
            "where event_date between $first - interval 8 day and $last",
            {"first": window.first_day, "last": window.last_day},
        )
        realtime = realtime_sql("window_purchases", "recent_events")
        censor = settings.load().censor_declines
        # DuckDB reads it by name; the log is read only when its decisions are used.
        decided = first_decisions(lakehouse, window) if censor else _NO_DECISIONS  # noqa: F841
        return con.sql(
            f"with joined as ({sql}), known as ({known}), realtime as ({realtime}) "
            "select joined.*, realtime.* exclude (transaction_id), "
            "coalesce(known.fraud, false) as fraud_label, "
            "case when joined.installments > 1 then coalesce(known.default_, false) end "
            "as default_label, "
            + ("coalesce(decided.holdout_weight, 1.0)" if censor else "1.0")
            + " as sample_weight "
            "from joined join realtime using (transaction_id) "
            "left join known using (transaction_id) "
            "left join decided using (transaction_id) "
            + ("where decided.decision is distinct from 'decline' " if censor else "")
            + "order by event_ts, transaction_id",
            params={"cutoff": window.cutoff},
        ).to_arrow_table()


_NO_DECISIONS = pa.table(
    {
        "transaction_id": pa.array([], pa.string()),
        "decision": pa.array([], pa.string()),
        "holdout_weight": pa.array([], pa.float64()),
    }
)


def first_decisions(lakehouse: Lakehouse, window: TrainingWindow) -> pa.Table:
    """Serving's first decision on each purchase of the window (the inference log), with the
    holdout's weight on a would-be decline it approved: with RISK_CENSOR_DECLINES, a declined
    purchase has no outcome (it never happened), so it is left out, and each held-out one
    stands for 1 / the share held out (docs/architecture.md#thresholds)."""
    log = read_decisions(
        lakehouse,
        as_of_time(window.first_day),
        as_of_time(window.last_day + timedelta(days=1)),
        ["transaction_id", "scored_at", "decision", "holdout_weight"],
    )
    if log is None or not log.num_rows:
        return _NO_DECISIONS
    if "holdout_weight" not in log.column_names:
        log = log.append_column("holdout_weight", pa.nulls(log.num_rows, pa.float64()))
    return (
        pl.from_arrow(log)
        .sort("scored_at")
        .unique("transaction_id", keep="first", maintain_order=True)
        .select("transaction_id", "decision", pl.col("holdout_weight").cast(pl.Float64))
        .to_arrow()
    )


def build_training_set(
    lakehouse: Lakehouse,
    feature_set: FeatureSet,
    window: TrainingWindow,
    entities: Mapping[str, FeatureSet] = {},
) -> pa.Table:
    joined = joined_purchases(lakehouse, feature_set, window, entities)
    codec = RecordCodec(feature_set)
    vocab = vocabularies(joined)
    known = pc.fill_null(joined["customer_known"], False).to_numpy(zero_copy_only=False)
    # The snapshot as serving decodes it (float32), and the transaction-time features over
    # every purchase at once (equal, bit for bit, to what /score computes for one).
    snapshot_matrix = codec.feature_matrix(joined)
    txn_matrix = transaction_feature_columns(
        Purchases.of_table(joined),
        Snapshots.of_table(joined, snapshot_matrix, codec),
        vocab,
    )
    columns = {
        "transaction_id": joined["transaction_id"],
        "customer_id": joined["customer_id"],
        "event_ts": joined["event_ts"],
        "snapshot_as_of": joined["snapshot_as_of"],
        "customer_known": pa.array(known),
    }
    columns |= {c.name: snapshot_matrix[:, i] for i, c in enumerate(feature_set.features)}
    columns |= {name: txn_matrix[:, i] for i, name in enumerate(TRANSACTION_FEATURES)}
    columns |= {  # NaN for null, as serving decodes them
        name: pc.fill_null(joined[name], np.nan).to_numpy() for name in ALL_REALTIME_FEATURES
    }
    for entity, entity_set in entities.items():  # float32 as serving decodes them, NaN: unknown
        prefix = f"{entity}_"
        mine = joined.select([prefix + c.name for c in entity_set.features])
        mine = mine.rename_columns([c.name for c in entity_set.features])
        columns[f"{entity}_known"] = pc.fill_null(joined[f"{entity}_known"], False)
        matrix = RecordCodec(entity_set).feature_matrix(mine)
        columns |= {prefix + c.name: matrix[:, i] for i, c in enumerate(entity_set.features)}
    columns["sample_weight"] = joined["sample_weight"]
    for target in TARGETS:
        columns[f"{target}_label"] = joined[f"{target}_label"]
        columns[f"{target}_split"] = _split(joined, window, target)
    table = pa.table(columns)
    versions = {e: fs.version for e, fs in entities.items()}
    return table.replace_schema_metadata(
        {
            "vocabularies": json.dumps(vocab),
            "feature_set_version": feature_set.version,
            "entity_feature_set_versions": json.dumps(versions),
        }
    )


def table_vocabularies(table: pa.Table) -> dict[str, tuple[str, ...]]:
    """The vocabularies a training set was built with (its schema metadata)."""
    return {k: tuple(v) for k, v in json.loads(table.schema.metadata[b"vocabularies"]).items()}


def _split(joined: pa.Table, window: TrainingWindow, target: str) -> pa.Array:
    """train | valid | test by weeks before the target's maturity horizon; null when the
    purchase is not eligible (not BNPL for default) or its label has not matured."""
    horizon = window.matured_until(target)
    test_from = horizon - timedelta(weeks=window.test_weeks)
    valid_from = test_from - timedelta(weeks=window.valid_weeks)
    at = joined["event_ts"]
    eligible = pc.is_valid(joined[f"{target}_label"])
    ts = lambda d: pa.scalar(d, pa.timestamp("us", "UTC"))  # noqa: E731
    matured = pc.less_equal(at, ts(horizon))
    split = pc.if_else(
        pc.greater(at, ts(test_from)),
        "test",
        pc.if_else(pc.greater(at, ts(valid_from)), "valid", "train"),
    )
    return pc.if_else(pc.and_(eligible, matured), split, pa.scalar(None, pa.string()))


def read_training_set(lakehouse: Lakehouse) -> pa.Table:
    """The stored training set in the order it was built (purchase time, then id). The Delta
    writer may store a table's record batches in any order (deltalake 1.6 did, run to run), and
    a model learns differently from the same rows in another order (bagging picks rows by
    position): ordered, one training set gives one model."""
    table = lakehouse.dataset(TRAINING_SET).to_table()
    return table.sort_by([("event_ts", "ascending"), ("transaction_id", "ascending")])


def content_hash(table: pa.Table) -> str:
    """SHA-256 of the rows (sorted by transaction id) and schema: same data, same hash."""
    ordered = table.sort_by("transaction_id")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ordered.schema.remove_metadata()) as writer:
        writer.write_table(ordered, max_chunksize=65_536)
    return hashlib.sha256(sink.getvalue()).hexdigest()
