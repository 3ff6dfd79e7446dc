"""Every snapshot feature equals a brute-force oracle computed from raw rows."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.registry import load_feature_set
from tests.compiled_models import build_snapshots, compile_models
from tests.feature_oracle import Label, Txn, snapshot

# Partitions 2026-03-07..09 -> snapshots as of 2026-03-08, 09 and 10 (00:00 UTC).
START, END = date(2026, 3, 7), date(2026, 3, 9)
AS_OFS = [datetime(2026, 3, d, tzinfo=UTC) for d in (8, 9, 10)]
US = timedelta(microseconds=1)
CATEGORIES = ["grocery", "travel", "crypto", "gift_cards", "new_category"]
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return compile_models(tmp_path_factory.mktemp("dbt"), START, END)


@pytest.fixture(scope="module")
def feature_names():
    fs = load_feature_set()
    return [c.name for c in fs.features + fs.context]


def assert_rows_equal(sql: dict, oracle: dict, names: list[str], where: str) -> None:
    for name in names:
        assert name in oracle, f"the oracle does not compute {name}: add it"
        got, want = sql[name], oracle[name]
        if isinstance(want, float) and want is not None and got is not None:
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (where, name, got, want)
        else:
            assert got == want, (where, name, got, want)


def check(compiled, names, transactions, labels):
    rows = build_snapshots(compiled, transactions, labels)
    for as_of in AS_OFS:
        expected = snapshot(transactions, labels, as_of)
        got = {c: r for (c, d), r in rows.items() if d == as_of.date()}
        assert set(got) == set(expected), f"customers differ at {as_of}"
        for customer, row in expected.items():
            sql = got[customer]
            assert sql["as_of"] == as_of
            assert_rows_equal(sql, row, names, f"{customer} @ {as_of.date()}")
    assert {d for _, d in rows} <= {a.date() for a in AS_OFS}


# Times concentrate where bugs live: exactly on window edges (+-1 us), at midnight, after as_of.
_edges = st.builds(
    lambda anchor, days, nudge: anchor - days * DAY + nudge * US,
    st.sampled_from(AS_OFS),
    st.sampled_from([0, 1, 7, 8, 30, 31, 90, 91, 365, 366]),
    st.sampled_from([-1, 0, 1]),
)
_midnights = st.integers(-400, 2).map(lambda d: AS_OFS[1] + d * DAY)
_anywhere = st.integers(-400 * 86_400_000_000, 2 * 86_400_000_000).map(lambda u: AS_OFS[1] + u * US)
timestamps = st.one_of(_edges, _midnights, _anywhere)
amounts = st.one_of(
    st.sampled_from([Decimal("100.00"), Decimal("100.01"), Decimal("99.99"), Decimal("0.01")]),
    st.integers(1, 10**9).map(lambda c: Decimal(c) / 100),
)


@st.composite
def histories(draw):
    n = draw(st.integers(1, 40))
    transactions = [
        Txn(
            transaction_id=f"t{i}",
            customer_id=draw(st.sampled_from(["c1", "c2", "ç-ü 3", "客户4"])),
            event_ts=draw(timestamps),
            amount=draw(amounts),
            merchant_category=draw(st.sampled_from(CATEGORIES)),
            channel=draw(st.sampled_from(["online", "pos", "app"])),
            device_id=draw(st.sampled_from([None, None, *[f"d{k}" for k in range(11)]])),
            country=draw(st.sampled_from(["US", "GB", "FR"])),
            installments=draw(st.sampled_from([1, 1, 3, 12])),
        )
        for i in range(n)
    ]
    labels = []
    for t in transactions:
        if draw(st.booleans()):
            known = draw(st.one_of(_edges, st.just(t.event_ts + draw(st.integers(1, 60)) * DAY)))
            labels.append(
                Label(t.transaction_id, draw(st.sampled_from(["fraud", "default"])), known)
            )
    return transactions, labels


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_features_match_the_oracle(compiled, feature_names, history):
    transactions, labels = history
    check(compiled, feature_names, transactions, labels)


def test_long_history_on_every_device_and_window(compiled, feature_names):
    """A denser hand-made history: > 8 devices, ties for the home country, near-equal amounts."""
    base = AS_OFS[1]
    transactions = [
        Txn(
            f"t{i}",
            "c1",
            base - timedelta(hours=7 * i + 1),
            Decimal("100.00") + Decimal(i % 3) / 100,
            ["grocery", "crypto", "travel"][i % 3],
            ["online", "app", "pos"][i % 3],
            None if i % 5 == 0 else f"d{i % 11}",
            ["US", "GB"][i % 2],
            1 + 2 * (i % 4 == 0),
        )
        for i in range(400)
    ]
    labels = [Label("t3", "fraud", base - DAY), Label("t4", "default", base)]
    check(compiled, feature_names, transactions, labels)


def test_labels_known_at_or_after_as_of_change_nothing(compiled, feature_names):
    base = AS_OFS[0]
    transactions = [
        Txn(f"t{i}", "c1", base - (i + 1) * DAY, Decimal("10.00"), "grocery", "pos", None, "US", 1)
        for i in range(10)
    ]
    clean = build_snapshots(compiled, transactions, [])
    late = [Label("t1", "fraud", base), Label("t2", "default", base + US)]
    leaked = build_snapshots(compiled, transactions, late)
    assert clean[("c1", base.date())] == leaked[("c1", base.date())]
    # ... while the next day's snapshot, taken after they became known, counts them.
    assert leaked[("c1", AS_OFS[1].date())]["prior_fraud_count_90d"] == 1
    assert leaked[("c1", AS_OFS[1].date())]["prior_default_count_90d"] == 1
