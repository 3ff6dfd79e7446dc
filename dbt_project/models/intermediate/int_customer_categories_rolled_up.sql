-- Purchases per customer, day and merchant category (diversity and entropy).
select
    customer_id,
    event_date,
    merchant_category,
    count(*) as txn_count
from {{ ref('stg_raw__transactions') }}
where {{ rolled_up_days_filter('event_date') }}
group by all
