-- Point-in-time card snapshots, keyed by the card's keyed hash: one row per card per
-- as_of_date, for every card with a purchase in the 90 days before as_of. A stolen card used
-- on several accounts shows here, not in any one customer's history.
with windowed as (
    {{ entity_purchases('card_hash') }}
),

first_seen as (
    {{ entity_first_seen('card_hash') }}
),

customers as (
    {{ distinct_in_windows('card_hash', 'customer_id', [30]) }}
),

devices as (
    {{ distinct_in_windows('card_hash', 'device_id', [30]) }}
),

counted as (
    select
        w.card_hash,
        w.as_of,
        w.as_of_date,
        {{ window_count(7) }}::integer as txn_count_7d,
        {{ window_count(90) }}::integer as txn_count_90d
    from windowed as w
    group by w.card_hash, w.as_of, w.as_of_date
)

select
    c.card_hash,
    c.as_of,
    c.as_of_date,
    coalesce(u.customer_id_30d, 0)::integer as distinct_customers_30d,
    coalesce(d.device_id_30d, 0)::integer as distinct_devices_30d,
    c.txn_count_7d,
    c.txn_count_90d,
    (epoch_us(c.as_of) - epoch_us(f.first_ts)) / 86400e6 as days_since_first_seen
from counted as c
join first_seen as f using (card_hash)
left join customers as u using (as_of_date, card_hash)
left join devices as d using (as_of_date, card_hash)
