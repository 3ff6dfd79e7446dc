"""The synthetic source: deterministic per day, schema-true, labels late and consistent."""

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets.ingest.contract import LABELS_SCHEMA, TRANSACTIONS_SCHEMA
from assets.ingest.synthetic import (
    MAX_LABEL_DELAY_DAYS,
    GeneratorConfig,
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
    for back in range(MAX_LABEL_DELAY_DAYS + 1):
        tx = generate_transactions(CONFIG, day - timedelta(days=back))
        hit = tx.filter(pc.is_in(tx["transaction_id"], pa.array(list(wanted))))
        found.update(
            zip(hit["transaction_id"].to_pylist(), hit["event_ts"].to_pylist(), strict=True)
        )
    assert set(found) == wanted
    for tid, kind, known in zip(*(labels[c].to_pylist() for c in LABELS_SCHEMA.names), strict=True):
        delay = known - found[tid]
        low, high = (2, 40) if kind == "fraud" else (30, 90)
        assert timedelta(days=low) <= delay <= timedelta(days=high), (kind, delay)


@pytest.mark.slow
def test_planted_patterns_show_in_behaviour():
    """Fraud comes with new devices and resale categories; BNPL defaults with plans."""
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

    assert share(resale, is_fraud) > 3 * share(resale, pc.invert(is_fraud))
    plan = pc.greater(tx["installments"], 1)
    assert share(plan, is_default) == 1.0  # defaults are instalment purchases
    assert 0.0005 < len(fraud) / tx.num_rows < 0.02


def test_injected_drift_starts_on_its_day_and_leaves_earlier_days_alone():
    from dataclasses import replace

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
