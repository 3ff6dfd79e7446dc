-- Point-in-time customer snapshots: one row per customer per as_of_date.
-- Dagster partition D (the last day of data) gives as_of = D + 1 day 00:00 UTC; a snapshot
-- sees purchases with event_ts < as_of and labels with label_ts < as_of only, and holds every
-- customer with a purchase in the retention horizon before as_of. Empty windows: counts and
-- sums 0, every mean, std, ratio, share and entropy null.
{%- set windows = [1, 7, 30, 90] %}
{#- table names, not CTEs: DuckDB would copy a CTE referenced twice instead of scanning it #}
{%- set customer_days = ref('int_customer_days_rolled_up') %}
{%- set device_days = ref('int_customer_devices_rolled_up') %}

with as_of_dates as (
    select d::date as as_of_date, d::date::timestamptz as as_of
    from generate_series(
        '{{ snapshot_start_date() }}'::date + 1,
        '{{ snapshot_end_date() }}'::date + 1,
        interval 1 day
    ) as s(d)
),

lifetimes as (
    select
        customer_id,
        min(first_ts) as first_ts,
        min(event_date) as first_date,
        max(last_ts) as last_ts,
        max(event_date) as last_date
    from {{ customer_days }}
    group by customer_id
),

-- Every customer seen before as_of, with their first purchase ever.
seen as (
    select a.as_of_date, a.as_of, l.*
    from as_of_dates as a
    join lifetimes as l on l.first_date < a.as_of_date
),

-- The last purchase before as_of is the customer's latest one, unless the warehouse already
-- holds later days (a backfill of an old partition): only those rows need the ASOF lookup,
-- and the daily run skips sorting the whole history for it.
looked_up as (
    select * from seen where last_date >= as_of_date
),

last_purchases as (
    select as_of_date, as_of, customer_id, first_ts, last_ts
    from seen
    where last_date < as_of_date
    union all
    select s.as_of_date, s.as_of, s.customer_id, s.first_ts, d.last_ts
    from looked_up as s
    asof join (
        select customer_id, event_date, last_ts from {{ customer_days }}
        where customer_id in (select customer_id from looked_up)
    ) as d
        on s.customer_id = d.customer_id and s.as_of_date > d.event_date
),

in_horizon as (
    select * from last_purchases
    where last_ts >= as_of - to_days({{ var('retention_days') }})
),

days_90 as (
    select a.as_of_date, a.as_of_date - r.event_date as age_days, r.*
    from {{ join_window(customer_days, 90) }}
),

purchases as (
    select
        as_of_date,
        customer_id,
        {%- for w in windows %}
        {{ window_sum('txn_count', w) }}::integer as txn_count_{{ w }}d,
        {{ window_sum('amount_sum', w) }}::decimal(18, 2) as amount_sum_{{ w }}d,
        {%- if w > 1 %}
        ({{ window_sum('amount_sum', w) }} / nullif({{ window_sum('txn_count', w) }}, 0))::double
            as amount_mean_{{ w }}d,
        {{ window_amount_std(w) }} as amount_std_{{ w }}d,
        max(amount_max) filter (where {{ in_window(w) }}) as amount_max_{{ w }}d,
        {%- endif %}
        {%- endfor %}
        {{ window_ratio('weekend_count', 'txn_count', 30) }} as weekend_ratio_30d,
        {{ window_ratio('night_count', 'txn_count', 30) }} as night_ratio_30d,
        {{ window_ratio('online_count', 'txn_count', 30) }} as online_ratio_30d,
        {{ window_ratio('bnpl_count', 'txn_count', 30) }} as bnpl_ratio_30d,
        {{ window_ratio('high_risk_count', 'txn_count', 30) }} as high_risk_category_ratio_30d,
        {{ window_sum('bnpl_amount_sum', 90) }}::decimal(18, 2) as bnpl_amount_sum_90d,
        min(first_ts) filter (where {{ in_window(30) }}) as first_ts_30d,
        max(last_ts) filter (where {{ in_window(30) }}) as last_ts_30d
    from days_90
    group by as_of_date, customer_id
),

category_counts as (
    select a.as_of_date, r.customer_id, r.merchant_category, sum(r.txn_count) as n
    from {{ join_window(ref('int_customer_categories_rolled_up'), 30) }}
    group by all
),

categories as (
    select
        as_of_date,
        customer_id,
        count(*)::integer as distinct_categories_30d,
        -- summed in a fixed order: a float sum must not depend on thread scheduling
        -sum(n / total * ln(n / total) order by merchant_category) as category_entropy_30d
    from (
        select *, sum(n) over (partition by as_of_date, customer_id)::double as total
        from category_counts
    )
    group by all
),

country_counts as (
    select
        a.as_of_date,
        r.customer_id,
        r.country,
        sum(r.txn_count) as n_90d,
        sum(r.txn_count) filter (where r.event_date >= a.as_of_date - 30) as n_30d,
        min(r.first_ts) as first_ts
    from {{ join_window(ref('int_customer_countries_rolled_up'), 90) }}
    group by all
),

countries as (
    select
        as_of_date,
        customer_id,
        count(*) filter (where n_30d > 0)::integer as distinct_countries_30d,
        first(country order by n_90d desc, first_ts, country) as home_country
    from country_counts
    group by all
),

device_counts as (
    select
        a.as_of_date,
        r.customer_id,
        r.device_id,
        sum(r.txn_count) as n_90d,
        coalesce(sum(r.txn_count) filter (where r.event_date >= a.as_of_date - 30), 0) as n_30d,
        coalesce(sum(r.txn_count) filter (where r.event_date >= a.as_of_date - 7), 0) as n_7d,
        max(r.last_ts) as last_ts
    from {{ join_window(device_days, 90) }}
    group by all
),

-- A device is new when the customer never used it before as_of - 7 days. One used in days
-- 8-90 is not; only one seen solely in the last 7 days needs a look further back.
older_devices as (
    select distinct c.as_of_date, c.customer_id, c.device_id
    from device_counts as c
    join {{ device_days }} as r using (customer_id, device_id)
    where c.n_90d = c.n_7d and r.event_date < c.as_of_date - 90
),

devices as (
    select
        c.as_of_date,
        c.customer_id,
        count(*) filter (where c.n_30d > 0)::integer as distinct_devices_30d,
        max(c.n_30d)::double / nullif(sum(c.n_30d), 0) as top_device_share_30d,
        coalesce(sum(c.n_7d) filter (where c.n_90d = c.n_7d and o.device_id is null), 0)::double
            / nullif(sum(c.n_7d), 0) as new_device_ratio_7d,
        list(c.device_id order by c.n_90d desc, c.last_ts desc, c.device_id)[1:8]
            as known_devices
    from device_counts as c
    left join older_devices as o using (as_of_date, customer_id, device_id)
    group by all
),

prior_labels as (
    select
        a.as_of_date,
        l.customer_id,
        count(distinct l.transaction_id) filter (where l.label = 'fraud')::integer
            as prior_fraud_count_90d,
        count(distinct l.transaction_id) filter (where l.label = 'default')::integer
            as prior_default_count_90d
    from as_of_dates as a
    join {{ ref('int_labelled_purchases') }} as l
        on l.event_date < a.as_of_date
        and l.event_date >= a.as_of_date - 90
        and l.label_ts < a.as_of
    group by all
)

select
    h.customer_id,
    h.as_of,
    h.as_of_date,
    {%- for w in windows %}
    coalesce(p.txn_count_{{ w }}d, 0) as txn_count_{{ w }}d,
    coalesce(p.amount_sum_{{ w }}d, 0)::decimal(18, 2) as amount_sum_{{ w }}d,
    {%- if w > 1 %}
    p.amount_mean_{{ w }}d,
    p.amount_std_{{ w }}d,
    p.amount_max_{{ w }}d,
    {%- endif %}
    {%- endfor %}
    p.weekend_ratio_30d,
    p.night_ratio_30d,
    p.online_ratio_30d,
    p.bnpl_ratio_30d,
    p.high_risk_category_ratio_30d,
    coalesce(p.bnpl_amount_sum_90d, 0)::decimal(18, 2) as bnpl_amount_sum_90d,
    coalesce(c.distinct_categories_30d, 0) as distinct_categories_30d,
    c.category_entropy_30d,
    coalesce(k.distinct_countries_30d, 0) as distinct_countries_30d,
    coalesce(d.distinct_devices_30d, 0) as distinct_devices_30d,
    d.top_device_share_30d,
    d.new_device_ratio_7d,
    case when p.txn_count_30d >= 2 then
        (epoch_us(p.last_ts_30d) - epoch_us(p.first_ts_30d)) / 3600e6 / (p.txn_count_30d - 1)
    end as mean_gap_hours_30d,
    (epoch_us(h.as_of) - epoch_us(h.last_ts)) / 86400e6 as days_since_last_txn,
    (epoch_us(h.as_of) - epoch_us(h.first_ts)) / 86400e6 as days_since_first_txn,
    p.amount_mean_7d / p.amount_mean_30d as amount_trend_7d_30d,
    p.txn_count_7d::double / nullif(p.txn_count_90d::double / 90 * 7, 0) as count_trend_7d_90d,
    coalesce(l.prior_fraud_count_90d, 0) as prior_fraud_count_90d,
    coalesce(l.prior_default_count_90d, 0) as prior_default_count_90d,
    case
        when h.first_ts > h.as_of - interval 30 days then 'new'
        when coalesce(p.txn_count_30d, 0) = 0 then 'dormant'
        else 'active'
    end as lifecycle_stage,
    k.home_country,
    coalesce(d.known_devices, []::varchar[]) as known_devices
from in_horizon as h
left join purchases as p using (as_of_date, customer_id)
left join categories as c using (as_of_date, customer_id)
left join countries as k using (as_of_date, customer_id)
left join devices as d using (as_of_date, customer_id)
left join prior_labels as l using (as_of_date, customer_id)
