-- Labelled purchases inside the 90-day windows of this run's snapshots, with their customer
-- and time. Rebuilt on each run from all labels known so far, so a label arriving late for
-- any purchase in those windows is never missed.
{{ config(materialized='table') }}

select
    l.transaction_id,
    t.customer_id,
    t.event_date,
    t.event_ts,
    l.label,
    l.label_ts
from {{ ref('stg_raw__labels') }} as l
join {{ ref('stg_raw__transactions') }} as t using (transaction_id)
where t.event_date between '{{ snapshot_start_date() }}'::date - 89
                       and '{{ snapshot_end_date() }}'::date
