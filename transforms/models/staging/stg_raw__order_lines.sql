-- Order lines (Online Retail layout, also the synthetic shop): the raw text kept for the quarantine,
-- next to the trimmed, cleaned and parsed values. No row is dropped here.
with source as (

    select * from {{ source('raw', 'order_lines') }}

),

-- The costly string work, done once per value.
stripped as (

    select
        *,
        {{ py_strip('invoice') }} as invoice_text,
        upper({{ py_strip('stock_code') }}) as stock_code_text,
        {{ collapse_whitespace('description') }} as description_text,
        {{ py_strip('quantity') }} as quantity_text,
        {{ py_strip('invoice_date') }} as invoice_date_text,
        {{ py_strip('unit_price') }} as unit_price_text,
        {{ normalize_id('customer_id') }} as customer_id_text,
        {{ collapse_whitespace('country') }} as country_text
    from source

)

select
    load_id,
    source_file,
    cast(source_row as bigint) as source_row,
    sheet,
    malformed_line,

    invoice as raw_invoice,
    stock_code as raw_stock_code,
    description as raw_description,
    quantity as raw_quantity,
    invoice_date as raw_invoice_date,
    unit_price as raw_unit_price,
    customer_id as raw_customer_id,
    country as raw_country,

    {{ null_if_token('invoice_text') }} as invoice,
    {{ null_if_token('stock_code_text') }} as stock_code,
    {{ null_if_token('description_text') }} as description,
    {{ parse_integer('quantity_text') }} as quantity,
    {{ parse_timestamp('invoice_date_text') }} as ordered_at,
    {{ parse_number('unit_price_text') }} as unit_price,
    {{ null_if_token('customer_id_text') }} as customer_id,
    {{ null_if_token('country_text') }} as country
from stripped
