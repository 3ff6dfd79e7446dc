-- One row per customer per day with purchases: counts, exact integer-cent sums for means and
-- variances, and the day's first and last purchase. Windows are whole UTC days, so every
-- window feature is an exact sum of these rows.
with transactions as (
    select * from {{ ref('stg_raw__transactions') }}
    where {{ rolled_up_days_filter('event_date') }}
),

category_risk as (
    select * from {{ ref('category_risk') }}
)

select
    t.customer_id,
    t.event_date,
    count(*) as txn_count,
    sum(t.amount)::decimal(38, 2) as amount_sum,
    sum((t.amount * 100)::hugeint) as amount_cents_sum,
    sum((t.amount * 100)::hugeint * (t.amount * 100)::hugeint) as amount_cents_sq_sum,
    max(t.amount) as amount_max,
    case when isodow(t.event_date) in (6, 7) then count(*) else 0 end as weekend_count,
    count(*) filter (where hour(t.event_ts) < 6) as night_count,
    count(*) filter (where t.channel = 'online') as online_count,
    count(*) filter (where t.installments > 1) as bnpl_count,
    coalesce(sum(t.amount) filter (where t.installments > 1), 0)::decimal(38, 2)
        as bnpl_amount_sum,
    count(*) filter (where c.risk_tier = 'high') as high_risk_count,
    min(t.event_ts) as first_ts,
    max(t.event_ts) as last_ts
from transactions as t
left join category_risk as c using (merchant_category)
group by t.customer_id, t.event_date
