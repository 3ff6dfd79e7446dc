"""A brute-force oracle: every snapshot feature recomputed from raw rows in plain Python.

Deliberately naive (lists, loops, exact fractions) and written from the feature definitions
in the mart's yml, not from the SQL.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

HIGH_RISK = {"electronics", "digital_goods", "gift_cards", "crypto"}
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Txn:
    transaction_id: str
    customer_id: str
    event_ts: datetime
    amount: Decimal
    merchant_category: str
    channel: str
    device_id: str | None
    country: str
    installments: int
    merchant_id: str = "m0"
    card_hash: str = "k0"


@dataclass(frozen=True)
class Label:
    transaction_id: str
    label: str
    label_ts: datetime


def _days(delta: timedelta) -> float:
    return (delta // timedelta(microseconds=1)) / 86_400e6


def _share(rows: list[Txn], pred) -> float | None:
    return sum(1 for t in rows if pred(t)) / len(rows) if rows else None


def _stdev(amounts: list[Decimal]) -> float | None:
    if len(amounts) < 2:
        return None
    xs = [Fraction(a) for a in amounts]
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def customer_snapshot(
    history: list[Txn], labels: list[Label], as_of: datetime, retention_days: int = 365
) -> dict | None:
    """The snapshot row of one customer at ``as_of``, or None when not in the horizon."""
    hist = sorted((t for t in history if t.event_ts < as_of), key=lambda t: t.event_ts)
    if not hist or hist[-1].event_ts < as_of - retention_days * DAY:
        return None

    def window(days: int) -> list[Txn]:
        return [t for t in hist if t.event_ts >= as_of - days * DAY]

    f: dict = {}
    for w in (1, 7, 30, 90):
        rows = window(w)
        amounts = [t.amount for t in rows]
        f[f"txn_count_{w}d"] = len(rows)
        f[f"amount_sum_{w}d"] = sum(amounts, Decimal(0))
        if w > 1:
            f[f"amount_mean_{w}d"] = float(Fraction(sum(amounts)) / len(rows)) if rows else None
            f[f"amount_std_{w}d"] = _stdev(amounts)
            f[f"amount_max_{w}d"] = max(amounts) if rows else None

    w7, w30, w90 = window(7), window(30), window(90)
    f["weekend_ratio_30d"] = _share(w30, lambda t: t.event_ts.weekday() >= 5)
    f["night_ratio_30d"] = _share(w30, lambda t: t.event_ts.hour < 6)
    f["online_ratio_30d"] = _share(w30, lambda t: t.channel == "online")
    f["bnpl_ratio_30d"] = _share(w30, lambda t: t.installments > 1)
    f["high_risk_category_ratio_30d"] = _share(w30, lambda t: t.merchant_category in HIGH_RISK)
    f["bnpl_amount_sum_90d"] = sum((t.amount for t in w90 if t.installments > 1), Decimal(0))

    categories = Counter(t.merchant_category for t in w30)
    f["distinct_categories_30d"] = len(categories)
    f["category_entropy_30d"] = (
        -sum(k / len(w30) * math.log(k / len(w30)) for k in categories.values()) if w30 else None
    )
    f["distinct_countries_30d"] = len({t.country for t in w30})

    with_device_30 = [t for t in w30 if t.device_id is not None]
    devices_30 = Counter(t.device_id for t in with_device_30)
    f["distinct_devices_30d"] = len(devices_30)
    f["top_device_share_30d"] = (
        max(devices_30.values()) / len(with_device_30) if with_device_30 else None
    )
    used_before = {t.device_id for t in hist if t.event_ts < as_of - 7 * DAY}
    with_device_7 = [t for t in w7 if t.device_id is not None]
    f["new_device_ratio_7d"] = _share(with_device_7, lambda t: t.device_id not in used_before)

    if len(w30) >= 2:
        gaps = [_days(b.event_ts - a.event_ts) * 24 for a, b in pairwise(w30)]
        f["mean_gap_hours_30d"] = sum(gaps) / len(gaps)
    else:
        f["mean_gap_hours_30d"] = None
    f["days_since_last_txn"] = _days(as_of - hist[-1].event_ts)
    f["days_since_first_txn"] = _days(as_of - hist[0].event_ts)
    m7, m30 = f["amount_mean_7d"], f["amount_mean_30d"]
    f["amount_trend_7d_30d"] = m7 / m30 if m7 is not None and m30 is not None else None
    c7, c90 = f["txn_count_7d"], f["txn_count_90d"]
    f["count_trend_7d_90d"] = c7 / (c90 / 90 * 7) if c90 else None

    in_90 = {t.transaction_id for t in w90}
    for kind in ("fraud", "default"):
        known = {
            lab.transaction_id
            for lab in labels
            if lab.label == kind and lab.label_ts < as_of and lab.transaction_id in in_90
        }
        f[f"prior_{kind}_count_90d"] = len(known)

    if as_of - hist[0].event_ts < 30 * DAY:
        f["lifecycle_stage"] = "new"
    elif not w30:
        f["lifecycle_stage"] = "dormant"
    else:
        f["lifecycle_stage"] = "active"

    countries = Counter(t.country for t in w90)
    first_seen = {}
    for t in w90:
        first_seen.setdefault(t.country, t.event_ts)
    f["home_country"] = (
        min(countries, key=lambda c: (-countries[c], first_seen[c], c)) if countries else None
    )
    devices_90 = Counter(t.device_id for t in w90 if t.device_id is not None)
    last_used = {t.device_id: t.event_ts for t in w90 if t.device_id is not None}
    f["known_devices"] = sorted(
        devices_90, key=lambda d: (-devices_90[d], -_days(last_used[d] - as_of), d)
    )[:8]
    return f


def snapshot(
    transactions: list[Txn], labels: list[Label], as_of: datetime, retention_days: int = 365
) -> dict[str, dict]:
    """Every customer's snapshot row at ``as_of``, keyed by customer id."""
    by_customer: dict[str, list[Txn]] = {}
    for t in transactions:
        by_customer.setdefault(t.customer_id, []).append(t)
    rows = {c: customer_snapshot(h, labels, as_of, retention_days) for c, h in by_customer.items()}
    return {c: r for c, r in rows.items() if r is not None}


ENTITY_KEYS = {"device": "device_id", "merchant": "merchant_id", "card": "card_hash"}
MIN_RATE_COUNT = 30  # a merchant rate needs this many purchases (plan purchases for defaults)


def entity_snapshot(
    entity: str, transactions: list[Txn], labels: list[Label], as_of: datetime
) -> dict[str, dict]:
    """Every device's, merchant's or card's snapshot row at ``as_of``, keyed by its id: the
    entities with a purchase in the 90 days before ``as_of``."""
    key = ENTITY_KEYS[entity]
    known = {
        kind: {lab.transaction_id for lab in labels if lab.label == kind and lab.label_ts < as_of}
        for kind in ("fraud", "default")
    }
    rows = {}
    for value in {getattr(t, key) for t in transactions} - {None}:
        hist = [t for t in transactions if getattr(t, key) == value and t.event_ts < as_of]

        def window(days: int, hist=hist) -> list[Txn]:
            return [t for t in hist if t.event_ts >= as_of - days * DAY]

        w1, w7, w30, w90 = window(1), window(7), window(30), window(90)
        if not w90:
            continue
        fraud_90 = sum(1 for t in w90 if t.transaction_id in known["fraud"])
        first_seen = _days(as_of - min(t.event_ts for t in hist))
        if entity == "device":
            f = {
                "distinct_customers_1d": len({t.customer_id for t in w1}),
                "distinct_customers_7d": len({t.customer_id for t in w7}),
                "distinct_customers_30d": len({t.customer_id for t in w30}),
                "distinct_cards_30d": len({t.card_hash for t in w30}),
                "txn_count_7d": len(w7),
                "txn_count_90d": len(w90),
                "fraud_share_90d": fraud_90 / len(w90),
                "days_since_first_seen": first_seen,
            }
        elif entity == "merchant":
            plans = [t for t in w90 if t.installments > 1]
            defaults = sum(1 for t in plans if t.transaction_id in known["default"])
            f = {
                "txn_count_7d": len(w7),
                "txn_count_30d": len(w30),
                "txn_count_90d": len(w90),
                "amount_sum_7d": sum((t.amount for t in w7), Decimal(0)),
                "amount_sum_30d": sum((t.amount for t in w30), Decimal(0)),
                "distinct_customers_30d": len({t.customer_id for t in w30}),
                "fraud_rate_90d": fraud_90 / len(w90) if len(w90) >= MIN_RATE_COUNT else None,
                "default_rate_90d": (
                    defaults / len(plans) if len(plans) >= MIN_RATE_COUNT else None
                ),
            }
        else:
            f = {
                "distinct_customers_30d": len({t.customer_id for t in w30}),
                "distinct_devices_30d": len({t.device_id for t in w30} - {None}),
                "txn_count_7d": len(w7),
                "txn_count_90d": len(w90),
                "days_since_first_seen": first_seen,
            }
        rows[value] = f
    return rows
