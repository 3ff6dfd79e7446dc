{#- Entity snapshots (devices, merchants, cards): the customer snapshot's rules, keyed by
    another entity. For each as_of of the run, every purchase with a `key` in the 90 days
    before it (`age_days` 1..90, event_ts < as_of) and whether its fraud and default labels
    were known by then (label_ts < as_of): a label that arrives later changes nothing. -#}
{% macro entity_purchases(key) %}
    {%- set start, end = snapshot_start_date(), snapshot_end_date() %}
    with as_of_dates as (
        select d::date as as_of_date, d::date::timestamptz as as_of
        from generate_series('{{ start }}'::date + 1, '{{ end }}'::date + 1, interval 1 day)
            as s(d)
    ),

    purchases as (
        select
            transaction_id, customer_id, event_date, event_ts, amount, installments,
            device_id, merchant_id, card_hash
        from {{ ref('stg_raw__transactions') }}
        where {{ key }} is not null
            and event_date between '{{ start }}'::date - 89 and '{{ end }}'::date
    ),

    labels as (
        select
            transaction_id,
            min(label_ts) filter (where label = 'fraud') as fraud_ts,
            min(label_ts) filter (where label = 'default') as default_ts
        from {{ ref('int_labelled_purchases') }}
        where event_date between '{{ start }}'::date - 89 and '{{ end }}'::date
        group by transaction_id
    )

    select
        a.as_of_date,
        a.as_of,
        a.as_of_date - p.event_date as age_days,
        p.*,
        coalesce(l.fraud_ts < a.as_of, false) as fraud_known,
        coalesce(l.default_ts < a.as_of, false) as default_known
    from as_of_dates as a
    join purchases as p
        on p.event_date < a.as_of_date
        and p.event_date >= a.as_of_date - 90
    left join labels as l using (transaction_id)
{% endmacro %}

{#- When each `key` was first seen: its first purchase ever (before as_of for every entity a
    snapshot holds, as each has a purchase in the 90 days before it). -#}
{% macro entity_first_seen(key) %}
    select {{ key }}, min(event_ts) as first_ts
    from {{ ref('stg_raw__transactions') }}
    where {{ key }} is not null and event_date <= '{{ snapshot_end_date() }}'::date
    group by {{ key }}
{% endmacro %}

{#- Distinct values of `column` in the window; 0 when empty. -#}
{% macro window_distinct(column, days) -%}
    count(distinct {{ column }}) filter (where {{ in_window(days) }})
{%- endmacro %}

{#- Purchases in the window (those with `condition`); 0 when empty. -#}
{% macro window_count(days, condition='true') -%}
    count(*) filter (where {{ in_window(days) }} and ({{ condition }}))
{%- endmacro %}
