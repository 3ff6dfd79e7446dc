-- Point-in-time device snapshots: one row per device per as_of_date, for every device with a
-- purchase in the 90 days before as_of. A device shared by many customers is a fraud ring's
-- or a card tester's: the customer snapshot cannot see it.
with windowed as (
    {{ entity_purchases('device_id') }}
),

first_seen as (
    {{ entity_first_seen('device_id') }}
)

select
    w.device_id,
    w.as_of,
    w.as_of_date,
    {{ window_distinct('customer_id', 1) }}::integer as distinct_customers_1d,
    {{ window_distinct('customer_id', 7) }}::integer as distinct_customers_7d,
    {{ window_distinct('customer_id', 30) }}::integer as distinct_customers_30d,
    {{ window_distinct('card_hash', 30) }}::integer as distinct_cards_30d,
    {{ window_count(7) }}::integer as txn_count_7d,
    {{ window_count(90) }}::integer as txn_count_90d,
    ({{ window_count(90, 'fraud_known') }} / {{ window_count(90) }})::double
        as fraud_share_90d,
    (epoch_us(w.as_of) - epoch_us(f.first_ts)) / 86400e6 as days_since_first_seen
from windowed as w
join first_seen as f using (device_id)
group by w.device_id, w.as_of, w.as_of_date, f.first_ts
