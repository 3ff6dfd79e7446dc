"""Validate incoming rows against the raw contract: good rows go on, bad rows are quarantined.

Every row comes out exactly once, either typed in the raw schema or in quarantine with every
reason it failed and its original text (card-number-like values masked). Nothing is dropped
and no bad value raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from assets.ingest.contract import (
    CHANNELS,
    LABEL_KINDS,
    LABELS_SCHEMA,
    QUARANTINE_SCHEMA,
    TRANSACTIONS_SCHEMA,
)
from riskcore.ids import CONTROL_RE2
from riskcore.pan import find_pan, mask_pans, scanned

# The gate of riskcore/pan.py, vectorised (RE2): only rows it matches are scanned in Python.
_MAY_HOLD_PAN = r"[\p{Nd} .\-]{13}"
# A whole value in this layout passes the gate ("2026-08-10 00:00" is 13 such characters) but
# holds no card number: its longest run of digit groups joined by space, dot or dash is 12
# digits ("58.123456-0500"), a card number has 13 or more. ASCII digits only (RE2's and
# Python's \d differ).
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
_ZONE = r"Z|[+-][0-9]{2}(:?[0-9]{2})?"
_TIMESTAMP = rf"^{_DAY}([ T]{_TIME}({_ZONE})?)?$"


def _card_numbers(text: pa.Table, names: list[str]) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Which rows hold a card number in any field (riskcore/pan.py, the one detector; a
    well-formed keyed hash in card_hash is not scanned, nor a value that is a timestamp in
    full), and every field with its card numbers masked."""
    any_pan = [False] * text.num_rows
    masked = {}
    for name in names:
        column = text[name]
        maybe = pc.and_not(
            pc.match_substring_regex(column, _MAY_HOLD_PAN),
            pc.match_substring_regex(column, _TIMESTAMP),
        )
        maybe = pc.fill_null(maybe, False)
        if not pc.any(maybe).as_py():
            masked[name] = column
            continue
        values = column.to_pylist()
        for i in np.flatnonzero(maybe.to_numpy(zero_copy_only=False)).tolist():
            if scanned(name, values[i]) and find_pan(values[i]):
                any_pan[i] = True
                values[i] = mask_pans(values[i])
        masked[name] = pa.array(values, pa.string())
    return pa.array(any_pan, pa.bool_()), masked


@dataclass(frozen=True)
class Validated:
    good: pa.Table
    quarantined: pa.Table


def _as_text(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Every contract column as text (missing ones as nulls), plus the row's position."""
    columns = {}
    for name in schema.names:
        if name in rows.column_names:
            col = rows[name]
            if pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = col.cast(pa.timestamp("us", tz="UTC"))  # naive times are taken as UTC
            columns[name] = col.cast(pa.string())
        else:
            columns[name] = pa.nulls(rows.num_rows, pa.string())
    columns["_row"] = pa.array(range(rows.num_rows), pa.int64())
    return pa.table(columns)


def _missing(*names: str) -> list[str]:
    return [f"case when {n} is null or trim({n}) = '' then 'missing {n}' end" for n in names]


def _control_characters(*names: str) -> list[str]:
    """Ids with a control character (riskcore/ids.py)."""
    return [
        f"case when regexp_matches({n}, '{CONTROL_RE2}') then '{n} holds a control character' end"
        for n in names
    ]


def _run(
    rows: pa.Table,
    schema: pa.Schema,
    checks: list[str],
    typed: str,
    key: str,
    day: date,
    source: str,
    source_table: str,
    known: Sequence[pa.Table] = (),
) -> Validated:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    text = _as_text(rows, schema)
    names = schema.names
    has_pan, masked = _card_numbers(text, names)
    text = text.append_column("_pan", has_pan)
    for name in names:
        text = text.append_column(f"_m_{name}", masked[name])
    con.register("incoming", text)
    already = ["select null::varchar as transaction_id where false"]  # ids already taken
    for i, relation in enumerate(known):
        con.register(f"known_{i}", relation)
        already.append(f"select transaction_id from known_{i}")
    masked_row = ", ".join(f"'{n}': _m_{n}" for n in names)
    checks = [*checks, "case when _pan then 'card-number-like value in a text field' end"]
    con.execute(f"""
        create temp table checked as
        with already as ({" union all ".join(already)}),
        base as (
            select *, concat_ws('; ', {", ".join(checks)}) as _reason
            from (select *, {typed} from incoming)
        ),
        ranked as (
            select *, row_number() over (
                partition by {key} order by _reason <> '', _row) as _rank
            from base
        )
        select *, concat_ws('; ', nullif(_reason, ''),
            case when _rank > 1 then 'duplicate {key}' end,
            case when transaction_id in (select transaction_id from already)
                 then 'duplicate transaction_id (already in another partition)' end
        ) as reason
        from ranked
    """)
    good = con.sql(
        f"select {', '.join('_t_' + n + ' as ' + n for n in names)} from checked "
        "where reason = '' order by _row"
    ).to_arrow_table()
    quarantined = con.sql(
        f"""select '{source_table}' as source_table, ?::date as partition_date,
                   ? as source, _row as row_number, reason,
                   to_json({{{masked_row}}})::varchar as row_json
            from checked where reason <> '' order by _row""",
        params=[day, source],
    ).to_arrow_table()
    con.close()
    # A reason may quote a value ("unknown channel ..."): masked like the row.
    reasons = pa.array([mask_pans(r) for r in quarantined["reason"].to_pylist()], pa.string())
    at = quarantined.schema.get_field_index("reason")
    quarantined = quarantined.set_column(at, "reason", reasons)
    return Validated(good.cast(schema), quarantined.cast(QUARANTINE_SCHEMA))


def stored_ids(window: pads.Dataset | None, incoming: Sequence[pa.Table]) -> pa.Table:
    """The ids stored in ``window`` (a lazy dataset of nearby days) that are among the
    ``incoming`` tables' ids: one streamed scan that keeps only those. The window is tens of
    millions of ids at 10M customers; read whole, or given to DuckDB as a dataset (it cannot
    count its rows, so it builds its hash table on them), it took ~7 GB."""
    ids = [
        chunk
        for rows in incoming
        if "transaction_id" in rows.column_names
        for chunk in rows["transaction_id"].cast(pa.string()).chunks
    ]
    wanted = pa.chunked_array(ids, pa.string()).combine_chunks()
    if window is None or not len(wanted):
        return pa.table({"transaction_id": wanted.slice(0, 0)})
    taken = pc.field("transaction_id").isin(pc.unique(wanted))
    return window.to_table(columns=["transaction_id"], filter=taken)


def validate_transactions(
    rows: pa.Table, day: date, source: str, known: Sequence[pa.Table] = ()
) -> Validated:
    """``known``: tables whose ``transaction_id`` is already taken (``stored_ids`` of other
    days, earlier sources of the day): a repeat is bad."""
    channels = ", ".join(f"'{c}'" for c in CHANNELS)
    typed = """
        try_cast(event_ts as timestamptz) as _t_event_ts,
        try_cast(amount as decimal(18, 2)) as _t_amount,
        try_cast(installments as smallint) as _t_installments,
        transaction_id as _t_transaction_id, customer_id as _t_customer_id,
        currency as _t_currency, merchant_id as _t_merchant_id,
        merchant_category as _t_merchant_category, channel as _t_channel,
        nullif(trim(device_id), '') as _t_device_id, country as _t_country,
        card_hash as _t_card_hash
    """
    checks = [
        *_missing(
            "transaction_id",
            "customer_id",
            "event_ts",
            "amount",
            "currency",
            "merchant_id",
            "merchant_category",
            "channel",
            "country",
            "installments",
            "card_hash",
        ),
        *_control_characters("transaction_id", "customer_id", "merchant_id", "device_id"),
        "case when event_ts is not null and _t_event_ts is null then 'unparsable event_ts' end",
        f"case when _t_event_ts::date <> '{day}'::date "
        f"then 'event_ts not on the partition day {day}' end",
        "case when try_cast(amount as double) <= 0 then 'amount must be > 0' "
        "when amount is not null "
        "and not regexp_full_match(trim(amount), '[0-9]{1,16}(\\.[0-9]{1,2}0*)?') "
        "then 'amount is not a decimal with at most 2 places' end",
        "case when not regexp_full_match(currency, '[A-Z]{3}') then 'currency not ISO 4217' end",
        "case when not regexp_full_match(country, '[A-Z]{2}') then 'country not ISO alpha-2' end",
        f"case when channel not in ({channels}) then 'unknown channel ' || channel end",
        "case when installments is not null and coalesce(_t_installments, 0) not between 1 and 60 "
        "then 'installments must be an integer from 1 to 60' end",
        "case when not regexp_full_match(card_hash, '[0-9a-f]{64}') "
        "then 'card_hash is not a keyed hash (64 hex characters)' end",
    ]
    return _run(
        rows,
        TRANSACTIONS_SCHEMA,
        checks,
        typed,
        "transaction_id",
        day,
        source,
        "transactions",
        known,
    )


def validate_labels(rows: pa.Table, day: date, source: str) -> Validated:
    kinds = ", ".join(f"'{k}'" for k in LABEL_KINDS)
    typed = """
        try_cast(label_ts as timestamptz) as _t_label_ts,
        transaction_id as _t_transaction_id, label as _t_label
    """
    checks = [
        *_missing("transaction_id", "label", "label_ts"),
        *_control_characters("transaction_id"),
        "case when label_ts is not null and _t_label_ts is null then 'unparsable label_ts' end",
        f"case when _t_label_ts::date <> '{day}'::date "
        f"then 'label_ts not on the partition day {day}' end",
        f"case when label not in ({kinds}) then 'unknown label ' || label end",
    ]
    return _run(rows, LABELS_SCHEMA, checks, typed, "transaction_id, label", day, source, "labels")
