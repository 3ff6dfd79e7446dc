-- Labels with their purchase's customer and time, one row per label, kept by the day the label
-- became known. Each run adds only the label days it can change (and any label day never
-- added), so its cost follows the days it builds, not the history: a label of day L counts
-- only in snapshots after L, whose 90-day windows start after L - 90, so it is joined to
-- purchases from L - 89 on and the scan of raw transactions is pruned to those days. A label
-- whose purchase is not there (not loaded yet, or older) is kept without one: its day is added
-- once, and a backfill that loads the purchase joins it again (label days up to 89 after the
-- run's last day are rebuilt with it).
{{ config(unique_key='label_date') }}
{%- set start, end = snapshot_start_date(), snapshot_end_date() %}
{%- set missing = days_never_added(ref('stg_raw__labels'), 'label_date') %}
{%- set first = (missing | first) if missing else start %}

with labels as (
    select * from {{ ref('stg_raw__labels') }}
    {%- if is_incremental() %}
    where label_date between '{{ start }}'::date and '{{ end }}'::date + 89
        {%- for day in missing %} or label_date = '{{ day }}'::date{% endfor %}
    {%- endif %}
),

transactions as (
    select transaction_id, customer_id, event_date, event_ts
    from {{ ref('stg_raw__transactions') }}
    {%- if is_incremental() %}
    where event_date >= '{{ first }}'::date - 89
    {%- endif %}
)

select
    l.transaction_id,
    t.customer_id,
    t.event_date,
    t.event_ts,
    l.label,
    l.label_ts,
    l.label_date
from labels as l
left join transactions as t
    on t.transaction_id = l.transaction_id
    and t.event_date >= l.label_date - 89
