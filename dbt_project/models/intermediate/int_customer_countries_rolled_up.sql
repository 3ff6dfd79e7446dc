-- Purchases per customer, day and country, with the first purchase (home country ties).
select
    customer_id,
    event_date,
    country,
    count(*) as txn_count,
    min(event_ts) as first_ts
from {{ ref('stg_raw__transactions') }}
where {{ rolled_up_days_filter('event_date') }}
group by all
