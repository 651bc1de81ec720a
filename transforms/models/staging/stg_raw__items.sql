-- Catalogue rows (generic items files and the synthetic shop's catalogue): raw text kept for the
-- quarantine, next to the cleaned and parsed values. Every load may re-send an item; no row is dropped here.
with source as (

    select * from {{ source('raw', 'items') }}

),

-- The costly string work, done once per value.
stripped as (

    select
        *,
        {{ normalize_id('item_id') }} as item_id_text,
        {{ collapse_whitespace('title') }} as title_text,
        {{ collapse_whitespace('description') }} as description_text,
        {{ collapse_whitespace('category') }} as category_text,
        {{ collapse_whitespace('brand') }} as brand_text,
        {{ py_strip('price') }} as price_text
    from source

)

select
    load_id,
    source_file,
    cast(source_row as bigint) as source_row,
    malformed_line,

    item_id as raw_item_id,
    title as raw_title,
    description as raw_description,
    category as raw_category,
    brand as raw_brand,
    price as raw_price,

    {{ null_if_token('item_id_text') }} as item_id,
    {{ null_if_token('title_text') }} as title,
    {{ null_if_token('description_text') }} as description,
    {{ null_if_token('category_text') }} as category,
    {{ null_if_token('brand_text') }} as brand,
    {{ parse_number('price_text') }} as price
from stripped
