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
    ),

    -- Each purchase meets its labels once, before it is repeated for every as_of it is in
    -- (materialized: the optimizer would otherwise join the labels to the repeated rows).
    labelled as materialized (
        select p.*, l.fraud_ts, l.default_ts
        from purchases as p
        left join labels as l using (transaction_id)
    )

    select
        a.as_of_date,
        a.as_of,
        a.as_of_date - p.event_date as age_days,
        p.* exclude (fraud_ts, default_ts),
        coalesce(p.fraud_ts < a.as_of, false) as fraud_known,
        coalesce(p.default_ts < a.as_of, false) as default_known
    from as_of_dates as a
    join labelled as p
        on p.event_date < a.as_of_date
        and p.event_date >= a.as_of_date - 90
{% endmacro %}

{#- When each `key` was first seen: its first purchase ever (before as_of for every entity a
    snapshot holds, as each has a purchase in the 90 days before it). -#}
{% macro entity_first_seen(key) %}
    select {{ key }}, min(event_ts) as first_ts
    from {{ ref('stg_raw__transactions') }}
    where {{ key }} is not null and event_date <= '{{ snapshot_end_date() }}'::date
    group by {{ key }}
{% endmacro %}

{#- Distinct non-null values of `column` per `key` in each of `windows` (days), from the rows
    of `relation` (`entity_purchases`): a value is in window w when its latest purchase is at
    most w days before as_of: `count(distinct column)` over the window, from two plain
    aggregations. Columns `<column>_<w>d`; a key without a non-null value in the widest
    window has no row (0 after the left join). -#}
{% macro distinct_in_windows(key, column, windows, relation='windowed') %}
    select
        as_of_date,
        {{ key }},
        {%- for w in windows %}
        count(*) filter (where age_days <= {{ w }}) as {{ column }}_{{ w }}d
        {{- "," if not loop.last }}
        {%- endfor %}
    from (
        select as_of_date, {{ key }}, {{ column }}, min(age_days) as age_days
        from {{ relation }}
        where age_days <= {{ windows | max }} and {{ column }} is not null
        group by all
    )
    group by all
{% endmacro %}

{#- Purchases in the window (those with `condition`); 0 when empty. -#}
{% macro window_count(days, condition='true') -%}
    count(*) filter (where {{ in_window(days) }} and ({{ condition }}))
{%- endmacro %}
