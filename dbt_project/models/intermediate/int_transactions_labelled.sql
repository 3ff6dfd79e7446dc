-- Labelled purchases with their customer and time. Rebuilt whole on each run (labels are few)
-- so a label arriving for any past purchase is never missed.
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
