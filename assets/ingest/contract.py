"""The raw schema contract: the columns, types and rules every source must satisfy."""

from __future__ import annotations

import pyarrow as pa

from riskcore.transaction_features import CHANNELS  # noqa: F401  (serving validates them too)

TS = pa.timestamp("us", tz="UTC")

TRANSACTIONS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("event_ts", TS, nullable=False),
        pa.field("amount", pa.decimal128(18, 2), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=True),
        pa.field("country", pa.string(), nullable=False),
        pa.field("installments", pa.int16(), nullable=False),
        pa.field("card_hash", pa.string(), nullable=False),
    ]
)

LABELS_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_ts", TS, nullable=False),
    ]
)

LABEL_KINDS = ("fraud", "default")

# Delta partition column of each raw table: the UTC day of its event time.
TRANSACTIONS_PARTITION = "event_date"
LABELS_PARTITION = "label_date"

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_table", pa.string(), nullable=False),
        pa.field("partition_date", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("row_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        # The offending row as text (card-number-like values masked), so nothing is lost.
        pa.field("row_json", pa.string(), nullable=False),
    ]
)
