-- Point-in-time card snapshots, keyed by the card's keyed hash: one row per card per
-- as_of_date, for every card with a purchase in the 90 days before as_of. A stolen card used
-- on several accounts shows here, not in any one customer's history.
with windowed as (
    {{ entity_purchases('card_hash') }}
),

first_seen as (
    {{ entity_first_seen('card_hash') }}
)

select
    w.card_hash,
    w.as_of,
    w.as_of_date,
    {{ window_distinct('customer_id', 30) }}::integer as distinct_customers_30d,
    {{ window_distinct('device_id', 30) }}::integer as distinct_devices_30d,
    {{ window_count(7) }}::integer as txn_count_7d,
    {{ window_count(90) }}::integer as txn_count_90d,
    (epoch_us(w.as_of) - epoch_us(f.first_ts)) / 86400e6 as days_since_first_seen
from windowed as w
join first_seen as f using (card_hash)
group by w.card_hash, w.as_of, w.as_of_date, f.first_ts
