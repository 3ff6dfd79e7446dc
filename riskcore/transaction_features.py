"""Transaction-time features: what the transaction says, and how it compares with the
customer's snapshot.

One definition, two shapes, equal bit for bit: ``transaction_features`` for one transaction
(``/score``: a few microseconds) and ``transaction_feature_columns`` for many at once (the
training set: numpy over every purchase, no Python per row but the device fingerprints).
tests/test_transaction_features.py holds them equal on random inputs, and
tests/test_point_in_time.py holds served vectors equal to training rows.

A transaction is a mapping with the raw schema's fields (``event_ts`` a UTC datetime,
``amount`` in the settlement currency). ``record`` is the customer's online record (the
snapshot as serving decodes it) or None for a customer the snapshot does not know: the
features that compare with the snapshot are then NaN, never invented defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskcore.codec import OnlineRecord, RecordCodec, fingerprint, list_fingerprints

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


@dataclass(frozen=True)
class Purchases:
    """Transactions as columns (numpy arrays of one length): what the features read."""

    event_us: np.ndarray  # int64 microseconds since the epoch, UTC
    amount: np.ndarray  # float64, the settlement currency
    channel: np.ndarray  # object (str | None)
    merchant_category: np.ndarray  # object
    installments: np.ndarray  # float64
    country: np.ndarray  # object
    device_id: np.ndarray  # object (str | None; "" counts as none)

    @classmethod
    def of_table(cls, table: pa.Table) -> Purchases:
        """From the raw schema's columns (training), each as ``transaction_features`` reads one."""
        text = lambda name: table[name].to_numpy(zero_copy_only=False)  # noqa: E731
        event = pc.cast(table["event_ts"], pa.timestamp("us", "UTC")).cast(pa.int64())
        return cls(
            event_us=event.to_numpy(zero_copy_only=False),
            # Decimal -> text -> float64: correctly rounded, as float(Decimal) is
            amount=pc.cast(pc.cast(table["amount"], pa.string()), pa.float64()).to_numpy(
                zero_copy_only=False
            ),
            channel=text("channel"),
            merchant_category=text("merchant_category"),
            installments=pc.cast(table["installments"], pa.float64()).to_numpy(
                zero_copy_only=False
            ),
            country=text("country"),
            device_id=text("device_id"),
        )


@dataclass(frozen=True)
class Snapshots:
    """Per purchase, the customer's snapshot as serving decodes it (float32 values), or
    nothing for a customer the snapshot does not know (``known`` False: every feature that
    compares with it is NaN)."""

    known: np.ndarray  # bool
    as_of_us: np.ndarray  # int64 (any value where not known)
    home_country: np.ndarray  # object (str | None)
    amount_mean_30d: np.ndarray  # float64 of the float32 served
    days_since_last_txn: np.ndarray
    days_since_first_txn: np.ndarray
    # The known devices' fingerprints, ragged: row i's are devices[offsets[i]:offsets[i + 1]];
    # ``has_devices`` False where the list is null.
    devices: np.ndarray  # uint32
    offsets: np.ndarray  # int64, one more than rows
    has_devices: np.ndarray  # bool

    @classmethod
    def of_table(cls, table: pa.Table, features: np.ndarray, codec: RecordCodec) -> Snapshots:
        """From point-in-time joined rows (training): ``customer_known``, ``snapshot_as_of``,
        the context columns, and ``features`` as ``codec.feature_matrix`` decodes them."""
        # Whole seconds, as a record stores its as_of (snapshots are at midnight anyway)
        as_of = pc.cast(table["snapshot_as_of"], pa.timestamp("s", "UTC"), safe=False)
        as_of = pc.cast(as_of, pa.timestamp("us", "UTC")).cast(pa.int64())
        devices, lengths = list_fingerprints(table["known_devices"])
        return cls(
            known=pc.fill_null(table["customer_known"], False).to_numpy(zero_copy_only=False),
            as_of_us=pc.fill_null(as_of, 0).to_numpy(zero_copy_only=False),
            home_country=table["home_country"].to_numpy(zero_copy_only=False),
            **{
                name: features[:, codec.feature_index[name]].astype(np.float64)
                for name in _SNAPSHOT_VALUES
            },
            devices=devices,
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            has_devices=pc.is_valid(table["known_devices"]).to_numpy(zero_copy_only=False),
        )


_SNAPSHOT_VALUES = ("amount_mean_30d", "days_since_last_txn", "days_since_first_txn")


def _codes(vocabulary: tuple[str, ...], values: np.ndarray) -> np.ndarray:
    """Each value's index in the vocabulary; NaN for a value unseen in training (missing, as
    LightGBM treats it)."""
    index = {v: float(i) for i, v in enumerate(vocabulary)}
    return np.fromiter((index.get(v, NAN) for v in values), np.float64, len(values))


def transaction_feature_columns(
    purchases: Purchases,
    snapshots: Snapshots | None,
    vocabularies: Mapping[str, tuple[str, ...]],
) -> np.ndarray:
    """The ``TRANSACTION_FEATURES`` of many transactions at once, an (n, features) float64
    array (NaN = missing), row i equal to ``transaction_features`` of purchase i: what the
    training set is built with. ``snapshots`` None: no customer is known."""
    n = len(purchases.amount)
    amount = purchases.amount
    hours_since_epoch = purchases.event_us // 3_600_000_000
    out = np.full((n, len(TRANSACTION_FEATURES)), NAN)
    out[:, 0] = amount
    # math.log1p, as one transaction's: numpy's SIMD log1p can differ in the last bit
    out[:, 1] = np.fromiter(map(math.log1p, amount.tolist()), np.float64, n)
    out[:, 2] = hours_since_epoch % 24
    out[:, 3] = (hours_since_epoch // 24 + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    out[:, 4] = _codes(vocabularies["channel"], purchases.channel)
    out[:, 5] = _codes(vocabularies["merchant_category"], purchases.merchant_category)
    out[:, 6] = purchases.installments
    if snapshots is None or not snapshots.known.any():
        return out
    s, known = snapshots, snapshots.known
    home = s.home_country
    has_home = known & np.array([h is not None for h in home], bool)
    out[:, 7] = np.where(has_home, purchases.country != home, NAN)
    device = purchases.device_id
    has_device = known & s.has_devices & np.array([bool(d) for d in device], bool)
    # A device's SHA-256 once, however many purchases it made
    unique = {d: fingerprint(d) for d in set(device[has_device].tolist())}
    prints = np.fromiter(
        (
            unique[d] if ok else 0
            for d, ok in zip(device.tolist(), has_device.tolist(), strict=True)
        ),
        np.uint32,
        n,
    )
    lengths = np.diff(s.offsets)
    owner = np.repeat(np.arange(n), lengths)  # the row each known device belongs to
    seen = np.bincount(owner[s.devices == prints[owner]], minlength=n) > 0
    out[:, 8] = np.where(has_device, ~seen, NAN)
    mean = s.amount_mean_30d
    usable = known & (mean > 0)  # NaN compares False: missing too
    out[:, 9] = np.where(usable, amount / np.where(usable, mean, 1.0), NAN)
    hours = (purchases.event_us - s.as_of_us) / 1e6 / 3600
    out[:, 10] = np.where(known, hours, NAN)
    out[:, 11] = np.where(known, s.days_since_last_txn + hours / 24, NAN)
    out[:, 12] = np.where(known, s.days_since_first_txn + hours / 24, NAN)
    return out


def _code(vocabulary: tuple[str, ...], value: str | None) -> float:
    try:
        return float(vocabulary.index(value))
    except ValueError:
        return NAN  # unseen in training: missing, as LightGBM treats it


def transaction_features(
    txn: Mapping, record: OnlineRecord | None, vocabularies: Mapping[str, tuple[str, ...]]
) -> np.ndarray:
    """The ``TRANSACTION_FEATURES`` of one transaction, as float64 (NaN = missing): what
    ``/score`` computes, in a few microseconds (a batch of one through
    ``transaction_feature_columns`` costs ~75 us of numpy calls: too slow for serving).
    Equal, bit for bit, to ``transaction_feature_columns`` on the same purchase
    (tests/test_transaction_features.py on random inputs, tests/test_point_in_time.py on
    served and trained rows)."""
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
