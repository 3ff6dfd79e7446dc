with source as (
    select * from {{ source('raw', 'transactions') }}
),

renamed as (
    select
        transaction_id,
        customer_id,
        event_ts::timestamptz as event_ts,
        event_date::date as event_date,
        amount::decimal(18, 2) as amount,
        currency,
        merchant_id,
        merchant_category,
        channel,
        device_id,
        country,
        installments::smallint as installments,
        card_hash
    from source
)

select * from renamed
