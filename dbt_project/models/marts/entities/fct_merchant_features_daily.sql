-- Point-in-time merchant snapshots: one row per merchant per as_of_date, for every merchant
-- with a purchase in the 90 days before as_of. A compromised merchant's fraud rate rises (as
-- its chargebacks arrive) while its customers each look ordinary.
{%- set min_count = 30 %}

with windowed as (
    {{ entity_purchases('merchant_id') }}
),

customers as (
    {{ distinct_in_windows('merchant_id', 'customer_id', [30]) }}
),

counted as (
    select
        merchant_id,
        as_of,
        as_of_date,
        {{ window_count(7) }}::integer as txn_count_7d,
        {{ window_count(30) }}::integer as txn_count_30d,
        {{ window_count(90) }}::integer as txn_count_90d,
        {{ window_sum('amount', 7) }}::decimal(18, 2) as amount_sum_7d,
        {{ window_sum('amount', 30) }}::decimal(18, 2) as amount_sum_30d,
        case when {{ window_count(90) }} >= {{ min_count }} then
            ({{ window_count(90, 'fraud_known') }} / {{ window_count(90) }})::double
        end as fraud_rate_90d,
        case when {{ window_count(90, 'installments > 1') }} >= {{ min_count }} then
            ({{ window_count(90, 'default_known') }}
                / {{ window_count(90, 'installments > 1') }})::double
        end as default_rate_90d
    from windowed
    group by merchant_id, as_of, as_of_date
)

select
    c.merchant_id,
    c.as_of,
    c.as_of_date,
    c.txn_count_7d,
    c.txn_count_30d,
    c.txn_count_90d,
    c.amount_sum_7d,
    c.amount_sum_30d,
    coalesce(u.customer_id_30d, 0)::integer as distinct_customers_30d,
    c.fraud_rate_90d,
    c.default_rate_90d
from counted as c
left join customers as u using (as_of_date, merchant_id)
