with source as (
    select * from {{ source('raw', 'labels') }}
),

renamed as (
    select
        transaction_id,
        label,
        label_ts::timestamptz as label_ts,
        label_date::date as label_date
    from source
)

select * from renamed
