-- Point-in-time device snapshots: one row per device per as_of_date, for every device with a
-- purchase in the 90 days before as_of. A device shared by many customers is a fraud ring's
-- or a card tester's: the customer snapshot cannot see it.
with windowed as (
    {{ entity_purchases('device_id') }}
),

first_seen as (
    {{ entity_first_seen('device_id') }}
),

customers as (
    {{ distinct_in_windows('device_id', 'customer_id', [1, 7, 30]) }}
),

cards as (
    {{ distinct_in_windows('device_id', 'card_hash', [30]) }}
),

counted as (
    select
        w.device_id,
        w.as_of,
        w.as_of_date,
        {{ window_count(7) }}::integer as txn_count_7d,
        {{ window_count(90) }}::integer as txn_count_90d,
        ({{ window_count(90, 'fraud_known') }} / {{ window_count(90) }})::double
            as fraud_share_90d
    from windowed as w
    group by w.device_id, w.as_of, w.as_of_date
)

select
    c.device_id,
    c.as_of,
    c.as_of_date,
    coalesce(u.customer_id_1d, 0)::integer as distinct_customers_1d,
    coalesce(u.customer_id_7d, 0)::integer as distinct_customers_7d,
    coalesce(u.customer_id_30d, 0)::integer as distinct_customers_30d,
    coalesce(k.card_hash_30d, 0)::integer as distinct_cards_30d,
    c.txn_count_7d,
    c.txn_count_90d,
    c.fraud_share_90d,
    (epoch_us(c.as_of) - epoch_us(f.first_ts)) / 86400e6 as days_since_first_seen
from counted as c
join first_seen as f using (device_id)
left join customers as u using (as_of_date, device_id)
left join cards as k using (as_of_date, device_id)
