-- Purchases per customer, day and device; purchases without a device are left out.
select
    customer_id,
    event_date,
    device_id,
    count(*) as txn_count,
    min(event_ts) as first_ts,
    max(event_ts) as last_ts
from {{ ref('stg_raw__transactions') }}
where device_id is not null and {{ rolled_up_days_filter('event_date') }}
group by all
