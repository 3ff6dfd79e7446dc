"""Every device, merchant and card snapshot feature equals a brute-force oracle computed from
raw rows (tests/feature_oracle.py, written from the marts' yml), with devices and cards shared
across customers, times on the window edges, and labels known before, at and after as_of."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compiled_models import ENTITY_MARTS, build_snapshots
from tests.feature_oracle import ENTITY_KEYS, Label, Txn, entity_snapshot
from tests.test_feature_oracle import (
    AS_OFS,
    _edges,
    amounts,
    assert_rows_equal,
    compiled,
    timestamps,
)

__all__ = ["compiled"]  # the module's compiled-models fixture, shared
DAY = timedelta(days=1)


def check(compiled, transactions, labels):
    for entity, mart in ENTITY_MARTS.items():
        rows = build_snapshots(compiled, transactions, labels, mart)
        for as_of in AS_OFS:
            expected = entity_snapshot(entity, transactions, labels, as_of)
            got = {k: r for (k, d), r in rows.items() if d == as_of.date()}
            assert set(got) == set(expected), f"{entity}s differ at {as_of}"
            for key, row in expected.items():
                assert got[key]["as_of"] == as_of
                names = [
                    c for c in got[key] if c not in (ENTITY_KEYS[entity], "as_of", "as_of_date")
                ]
                assert_rows_equal(got[key], row, names, f"{entity} {key} @ {as_of.date()}")
        assert {d for _, d in rows} <= {a.date() for a in AS_OFS}


@st.composite
def shared_histories(draw):
    """Few devices, cards and merchants among several customers (up to 80 purchases, so a
    merchant can pass the rates' minimum count of 30)."""
    n = draw(st.integers(1, 80))
    transactions = [
        Txn(
            transaction_id=f"t{i}",
            customer_id=draw(st.sampled_from(["c1", "c2", "c3", "客户4"])),
            event_ts=draw(timestamps),
            amount=draw(amounts),
            merchant_category="retail",
            channel="online",
            device_id=draw(st.sampled_from([None, "d1", "d2", "d3"])),
            country="US",
            installments=draw(st.sampled_from([1, 3])),
            merchant_id=draw(st.sampled_from(["m1", "m2"])),
            card_hash=draw(st.sampled_from(["k1", "k2", "k3"])),
        )
        for i in range(n)
    ]
    labels = []
    for t in transactions:
        if draw(st.booleans()):
            known = draw(st.one_of(_edges, st.just(t.event_ts + draw(st.integers(1, 60)) * DAY)))
            kind = draw(st.sampled_from(["fraud", "default"]))
            labels.append(Label(t.transaction_id, kind, known))
    return transactions, labels


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shared_histories())
def test_entity_features_match_the_oracle(compiled, history):
    check(compiled, *history)


def _purchase(i: int, ts, **kw) -> Txn:
    base = dict(
        transaction_id=f"t{i}",
        customer_id=f"c{i % 7}",
        event_ts=ts,
        amount=10,
        merchant_category="retail",
        channel="online",
        device_id="d1",
        country="US",
        installments=3 if i % 2 else 1,
        merchant_id="m1",
        card_hash="k1",
    )
    return Txn(**(base | kw))


def test_labels_known_at_or_after_as_of_change_nothing(compiled):
    """The hidden-label trap, per entity: a chargeback or default known at as_of or later
    leaves every rate and share as if it had not come; one known 1 us before counts."""
    as_of = AS_OFS[1]
    transactions = [_purchase(i, as_of - (i % 80 + 1) * DAY / 2) for i in range(70)]
    later = [Label(f"t{i}", "fraud" if i % 2 == 0 else "default", as_of) for i in range(70)]
    rows = {e: build_snapshots(compiled, transactions, later, m) for e, m in ENTITY_MARTS.items()}
    assert rows["device"][("d1", as_of.date())]["fraud_share_90d"] == 0
    assert rows["merchant"][("m1", as_of.date())]["fraud_rate_90d"] == 0
    assert rows["merchant"][("m1", as_of.date())]["default_rate_90d"] == 0
    check(compiled, transactions, later)
    earlier = [
        Label(lab.transaction_id, lab.label, as_of - timedelta(microseconds=1)) for lab in later
    ]
    rows = build_snapshots(compiled, transactions, earlier, ENTITY_MARTS["merchant"])
    assert rows[("m1", as_of.date())]["fraud_rate_90d"] == pytest.approx(35 / 70)
    assert rows[("m1", as_of.date())]["default_rate_90d"] == pytest.approx(1.0)
    check(compiled, transactions, earlier)
