"""Transaction-time features: what the transaction says, and how it compares with the
customer's snapshot. Training and ``/score`` call this one function, so they cannot drift.

A transaction is a mapping with the raw schema's fields (``event_ts`` a UTC datetime,
``amount`` in the settlement currency). ``record`` is the customer's online record (the
snapshot as serving decodes it) or None for a customer the snapshot does not know: the
features that compare with the snapshot are then NaN, never invented defaults.
"""

import math
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from riskcore.codec import OnlineRecord, fingerprint

# Name -> meaning (the meanings are the reason codes' descriptions).
# From the transaction alone: all a transaction-only model may read (it serves customers
# without a snapshot and store outages, where nothing else is known).
_REQUEST = {
    "amount": "Purchase amount in the settlement currency.",
    "log_amount": "log(1 + amount).",
    "hour_utc": "Hour of the purchase (UTC).",
    "weekday_utc": "Day of the week of the purchase (UTC, Monday = 0).",
    "channel": "Channel of the purchase (online, pos, app).",  # coded by the spec's vocabulary
    "merchant_category": "Merchant category of the purchase.",  # coded likewise
    "installments": "Number of instalments (1 = paid in full, > 1 = BNPL plan).",
}
# Against the customer's snapshot (NaN without one): behavioural models only.
_SNAPSHOT_RELATIVE = {
    "foreign_country": "Purchase country differs from the customer's home country.",
    "unknown_device": "Device not among the customer's known devices.",
    "amount_to_mean_30d": "Amount / the customer's mean purchase amount over 30 days.",
    "hours_since_snapshot": "Hours between the snapshot's as_of and the purchase.",
    "days_since_last_txn_now": "Days since the customer's previous purchase, at purchase time.",
    "days_since_first_txn_now": "Days since the customer's first purchase, at purchase time.",
}
REQUEST_FEATURES = tuple(_REQUEST)
SNAPSHOT_RELATIVE_FEATURES = tuple(_SNAPSHOT_RELATIVE)
DESCRIPTIONS = _REQUEST | _SNAPSHOT_RELATIVE
TRANSACTION_FEATURES = REQUEST_FEATURES + SNAPSHOT_RELATIVE_FEATURES
CATEGORICAL = ("channel", "merchant_category")
CHANNELS = ("online", "pos", "app")  # the raw contract's channels
NAN = math.nan


def _code(vocabulary: tuple[str, ...], value: str | None) -> float:
    try:
        return float(vocabulary.index(value))
    except ValueError:
        return NAN  # unseen in training: missing, as LightGBM treats it


def transaction_features(
    txn: Mapping, record: OnlineRecord | None, vocabularies: Mapping[str, tuple[str, ...]]
) -> np.ndarray:
    """The ``TRANSACTION_FEATURES`` of one transaction, as float64 (NaN = missing)."""
    at: datetime = txn["event_ts"].astimezone(UTC)
    amount = float(txn["amount"])
    out = [
        amount,
        math.log1p(amount),
        at.hour,
        at.weekday(),
        _code(vocabularies["channel"], txn["channel"]),
        _code(vocabularies["merchant_category"], txn["merchant_category"]),
        float(txn["installments"]),
    ]
    if record is None:
        return np.array(out + [NAN] * len(SNAPSHOT_RELATIVE_FEATURES))
    home = record.context.get("home_country")
    devices = record.context.get("known_devices")
    device = txn.get("device_id")
    index, values = record.codec.feature_index, record.features
    mean_30d = float(values[index["amount_mean_30d"]])
    hours = (at - record.as_of).total_seconds() / 3600
    out += [
        NAN if home is None else float(txn["country"] != home),
        NAN if devices is None or not device else float(fingerprint(device) not in devices),
        amount / mean_30d if mean_30d == mean_30d and mean_30d > 0 else NAN,
        hours,
        float(values[index["days_since_last_txn"]]) + hours / 24,
        float(values[index["days_since_first_txn"]]) + hours / 24,
    ]
    return np.array(out)
