"""The real-time features of training rows, from raw purchases, with serving's semantics
(``riskcore/realtime.py``): for a purchase at ``t``, the customer's other purchases with
``t - w <= event_ts < t``; the newest purchase before ``t`` within 7 days; the other purchases
from its device in the hour before, and their customers. Every raw purchase is an event
(production sends each one to ``/events`` or the stream)."""

from riskcore.realtime import (
    ALL_REALTIME_FEATURES,
    LAST_TXN_HORIZON,
    LONG_WINDOW,
    SHORT_WINDOW,
)


def realtime_sql(purchases: str, events: str) -> str:
    """SELECT transaction_id and ``ALL_REALTIME_FEATURES`` for every row of ``purchases``
    (transaction_id, customer_id, event_ts, device_id), from ``events`` (the same columns plus
    amount, merchant_id). Types as serving decodes them: counts, amounts and seconds as
    DOUBLE (the amount sum exact in DECIMAL first), null where serving has NaN."""
    short_s, long_s = int(SHORT_WINDOW.total_seconds()), int(LONG_WINDOW.total_seconds())
    horizon_s = int(LAST_TXN_HORIZON.total_seconds())
    sql = f"""
    with windows as (
        select p.transaction_id,
            count(e.transaction_id) filter (
                where e.event_ts >= p.event_ts - to_seconds({short_s})) as txn_count_10m,
            count(e.transaction_id) as txn_count_1h,
            coalesce(sum(e.amount), 0) as amount_sum_1h,
            count(distinct e.device_id) as distinct_devices_1h,
            count(distinct e.merchant_id) as distinct_merchants_1h
        from {purchases} p left join {events} e
            on e.customer_id = p.customer_id
            and e.event_ts >= p.event_ts - to_seconds({long_s}) and e.event_ts < p.event_ts
            and e.transaction_id <> p.transaction_id
        group by p.transaction_id
    ), shared as (
        select p.transaction_id,
            count(e.transaction_id) as device_txn_count_1h,
            count(distinct e.customer_id) as device_distinct_customers_1h
        from {purchases} p left join {events} e
            on e.device_id = p.device_id
            and e.event_ts >= p.event_ts - to_seconds({long_s}) and e.event_ts < p.event_ts
            and e.transaction_id <> p.transaction_id
        where p.device_id is not null
        group by p.transaction_id
    ), previous as (
        select p.transaction_id,
            (epoch_us(p.event_ts) - epoch_us(e.event_ts))::double / 1e6::double as since
        from {purchases} p asof left join {events} e
            on p.customer_id = e.customer_id and p.event_ts > e.event_ts
    )
    select transaction_id,
        txn_count_10m::double as txn_count_10m, txn_count_1h::double as txn_count_1h,
        amount_sum_1h::double as amount_sum_1h,
        distinct_devices_1h::double as distinct_devices_1h,
        distinct_merchants_1h::double as distinct_merchants_1h,
        case when since > {horizon_s} then null else since end as seconds_since_last_txn,
        shared.device_txn_count_1h::double as device_txn_count_1h,
        shared.device_distinct_customers_1h::double as device_distinct_customers_1h
    from windows join previous using (transaction_id)
    left join shared using (transaction_id)
    """
    assert all(name in sql for name in ALL_REALTIME_FEATURES)  # one list of names
    return sql
