"""The synthetic source: deterministic per day, schema-true, labels late and consistent, the
whole world dated from the configured start."""

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets.ingest.contract import LABELS_SCHEMA, TRANSACTIONS_SCHEMA
from assets.ingest.synthetic import (
    GeneratorConfig,
    _spread,
    generate_labels,
    generate_transactions,
    population,
)
from assets.ingest.validate import validate_transactions

CONFIG = GeneratorConfig(seed=11, customers=3_000)
DAY = date(2026, 3, 3)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_same_seed_gives_byte_identical_days():
    first = _ipc(generate_transactions(CONFIG, DAY)) + _ipc(generate_labels(CONFIG, DAY))
    population.cache_clear()  # nothing carried over from the first call
    generate_transactions(CONFIG, DAY + timedelta(days=5))  # other days in between
    second = _ipc(generate_transactions(CONFIG, DAY)) + _ipc(generate_labels(CONFIG, DAY))
    assert first == second


def test_other_seed_gives_other_data():
    other = GeneratorConfig(seed=12, customers=3_000)
    assert not generate_transactions(other, DAY).equals(generate_transactions(CONFIG, DAY))


def test_rows_follow_the_contract_and_pass_validation():
    tx = generate_transactions(CONFIG, DAY)
    assert tx.schema.equals(TRANSACTIONS_SCHEMA)
    assert tx.num_rows > 300
    assert pc.count_distinct(tx["transaction_id"]).as_py() == tx.num_rows
    assert pc.all(pc.equal(pc.cast(tx["event_ts"], pa.date32()), pa.scalar(DAY))).as_py()
    checked = validate_transactions(tx, DAY, "synthetic")
    assert checked.quarantined.num_rows == 0
    assert checked.good.equals(tx)
    # Nothing names the planted patterns: the columns are exactly the contract's.
    assert tx.column_names == TRANSACTIONS_SCHEMA.names


def test_labels_arrive_late_for_real_earlier_transactions():
    day = date(2026, 5, 1)
    labels = generate_labels(CONFIG, day)
    assert labels.schema.equals(LABELS_SCHEMA)
    assert labels.num_rows > 0
    assert pc.all(pc.equal(pc.cast(labels["label_ts"], pa.date32()), pa.scalar(day))).as_py()
    wanted = set(labels["transaction_id"].to_pylist())
    found = {}
    for back in range(CONFIG.max_label_delay_days + 1):
        tx = generate_transactions(CONFIG, day - timedelta(days=back))
        hit = tx.filter(pc.is_in(tx["transaction_id"], pa.array(list(wanted))))
        found.update(
            zip(hit["transaction_id"].to_pylist(), hit["event_ts"].to_pylist(), strict=True)
        )
    assert set(found) == wanted
    for tid, kind, known in zip(*(labels[c].to_pylist() for c in LABELS_SCHEMA.names), strict=True):
        delay = known - found[tid]
        low, high = CONFIG.chargeback_delay_days if kind == "fraud" else CONFIG.default_delay_days
        assert timedelta(days=low) <= delay <= timedelta(days=high), (kind, delay)


def test_label_delays_are_configurable():
    """A simulation's short delays: every label within its kind's bounds, and the look-back of
    the label days shrinks with them."""
    short = replace(CONFIG, chargeback_delay_days=(1, 3), default_delay_days=(2, 5))
    assert short.max_label_delay_days == 6
    day = date(2026, 4, 10)
    labels = generate_labels(short, day)
    assert labels.num_rows > 0
    recent = pa.concat_tables(
        generate_transactions(short, day - timedelta(days=back)) for back in range(7)
    )
    when = dict(zip(*(recent[c].to_pylist() for c in ("transaction_id", "event_ts")), strict=True))
    for tid, kind, known in zip(*(labels[c].to_pylist() for c in LABELS_SCHEMA.names), strict=True):
        low, high = short.chargeback_delay_days if kind == "fraud" else short.default_delay_days
        assert timedelta(days=low) <= known - when[tid] <= timedelta(days=high), (kind, tid)


def _shifted(table: pa.Table, column: str, days: int) -> pa.Table:
    moved = pc.add(table[column], pa.scalar(timedelta(days=days), pa.duration("us")))
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), moved)


def test_the_world_moves_with_its_start():
    """Every dated event is an offset from the start: a day of the same offset is the same day
    (a week later: the same weekdays too, so byte-identical apart from the dates)."""
    later = replace(CONFIG, start=CONFIG.start + timedelta(days=7))
    for offset in (0, 40, 70):  # the scheduled pattern shifts fall in between
        day = CONFIG.start + timedelta(days=offset)
        moved = day + timedelta(days=7)
        tx = generate_transactions(later, moved)
        assert _shifted(generate_transactions(CONFIG, day), "event_ts", 7).equals(tx)
        labels = generate_labels(later, moved)
        assert _shifted(generate_labels(CONFIG, day), "label_ts", 7).equals(labels)


def test_labels_do_not_depend_on_the_weekday_of_the_start():
    """Incidents (and so labels) keep no weekday rhythm: any start gives the same labels."""
    later = replace(CONFIG, start=CONFIG.start + timedelta(days=3))
    day = date(2026, 3, 20)
    assert _shifted(generate_labels(CONFIG, day), "label_ts", 3).equals(
        generate_labels(later, day + timedelta(days=3))
    )


@pytest.mark.slow
def test_planted_patterns_show_in_behaviour():
    """Fraud leans to resale categories and comes partly from the victim's own device; BNPL
    defaults are plan purchases; fraud is as rare as in public card data."""
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(60)]
    tx = pa.concat_tables(generate_transactions(CONFIG, d) for d in days)
    labels = pa.concat_tables(generate_labels(CONFIG, d + timedelta(days=60)) for d in days)
    fraud = set(labels.filter(pc.equal(labels["label"], "fraud"))["transaction_id"].to_pylist())
    default = set(labels.filter(pc.equal(labels["label"], "default"))["transaction_id"].to_pylist())
    is_fraud = pc.is_in(tx["transaction_id"], pa.array(list(fraud)))
    is_default = pc.is_in(tx["transaction_id"], pa.array(list(default)))
    resale = pc.is_in(
        tx["merchant_category"], pa.array(["electronics", "digital_goods", "gift_cards", "crypto"])
    )

    def share(mask, of):
        return pc.mean(pc.cast(pc.filter(mask, of), pa.float64())).as_py()

    # Fraud leans to resale categories, but good customers buy there too (the overlap).
    assert 0.1 < share(resale, pc.invert(is_fraud)) < share(resale, is_fraud) / 2
    plan = pc.greater(tx["installments"], 1)
    assert share(plan, is_default) == 1.0  # defaults are instalment purchases
    # As rare as public card-fraud rates (this small world's window holds a ring's bust-out)
    assert 0.001 < len(fraud) / tx.num_rows < 0.005
    # Label noise and imitation: part of the fraud comes from the customer's own device.
    devices = tx.filter(is_fraud)["device_id"]
    assert 0 < pc.count(devices).as_py() < len(fraud)


def test_injected_drift_starts_on_its_day_and_leaves_earlier_days_alone():
    drifted = replace(CONFIG, drift_from=DAY)
    before = DAY - timedelta(days=1)
    assert _ipc(generate_transactions(drifted, before)) == _ipc(
        generate_transactions(CONFIG, before)
    )
    assert _ipc(generate_labels(drifted, DAY)) == _ipc(
        generate_labels(CONFIG, DAY)
    )  # same incidents

    def profile(config, day):
        t = generate_transactions(config, day)
        amount = pc.mean(pc.cast(t["amount"], pa.float64())).as_py()
        resale_categories = pa.array(["electronics", "digital_goods", "gift_cards", "crypto"])
        in_resale = pc.is_in(t["merchant_category"], resale_categories)
        resale = pc.mean(pc.cast(in_resale, pa.float64())).as_py()
        online = pc.mean(pc.cast(pc.equal(t["channel"], "online"), pa.float64())).as_py()
        return t.num_rows, amount, resale, online

    rows, amount, resale, online = profile(CONFIG, DAY)
    rows_d, amount_d, resale_d, online_d = profile(drifted, DAY)
    assert rows_d == rows  # the same purchases, shifted
    assert amount_d > 1.5 * amount and resale_d > resale + 0.2 and online_d > online + 0.1
    assert (
        validate_transactions(
            generate_transactions(drifted, DAY), DAY, "synthetic"
        ).quarantined.num_rows
        == 0
    )


def test_rings_and_compromised_merchants_show_only_across_customers():
    """A ring's accounts share devices and stolen cards (no customer's own card is on another
    account); a compromised merchant's purchases turn fraudulent for three weeks."""
    pop = population(CONFIG)
    ring_day = int(pop.ring_day[0])
    days = [CONFIG.start + timedelta(days=ring_day + i) for i in range(-20, 15)]
    tx = pl.from_arrow(pa.concat_tables(generate_transactions(CONFIG, d) for d in days))
    members = set(pc.take(pop.customer_ids, np.flatnonzero(pop.ring == 0)).to_pylist())
    per_card = tx.group_by("card_hash").agg(pl.col("customer_id").unique())
    shared = per_card.filter(pl.col("customer_id").list.len() > 1)
    assert shared.height >= 2  # stolen cards, each on several of the ring's accounts
    assert set(shared["customer_id"].explode().to_list()) <= members
    by_device = tx.drop_nulls("device_id").group_by("device_id").agg(pl.col("customer_id").unique())
    ring_devices = by_device.filter(
        pl.col("customer_id").list.eval(pl.element().is_in(members)).list.all()
    )
    assert ring_devices["customer_id"].list.len().max() >= 4  # one device, many accounts

    merchant = f"mer_{pop.compromised[0]:06d}"
    first = CONFIG.start + timedelta(days=int(pop.compromise_day[0]))
    window = [first + timedelta(days=i) for i in range(-21, 21)]
    sales = pa.concat_tables(generate_transactions(CONFIG, d) for d in window)
    sales = pl.from_arrow(sales).filter(pl.col("merchant_id") == merchant)
    label_days = [window[0] + timedelta(days=i) for i in range(len(window) + 61)]
    labels = pa.concat_tables(generate_labels(CONFIG, d) for d in label_days)
    fraud = pc.filter(labels["transaction_id"], pc.equal(labels["label"], "fraud")).to_pylist()
    labelled = sales.with_columns(
        fraud=pl.col("transaction_id").is_in(fraud), during=pl.col("event_ts").dt.date() >= first
    )
    rates = labelled.group_by("during").agg(pl.col("fraud").mean()).sort("during")["fraud"]
    assert rates[0] < 0.05 < 0.3 < rates[1]


@pytest.mark.parametrize("count", [2, 16, 358, 359, 800])
def test_rings_and_compromises_spread_over_the_year_at_any_size(count):
    """A large world has more rings a year than days (800 at 1M customers): some every day."""
    days = _spread(np.random.default_rng(0), count, 7, 365)
    assert len(days) == count and days.min() >= 7 and days.max() < 365
    step = max(1, (365 - 7) // count)  # no long gap: any few months see some
    assert np.diff(np.sort(days)).max() <= 2 * step
    assert days.max() - days.min() >= (365 - 7) * (count - 1) / count - 2 * step
