-- Generic interaction events (user, item, time, optional type/quantity/price/session/event id): raw text kept
-- for the quarantine, next to the trimmed and parsed values. No row is dropped here.
with source as (

    select * from {{ source('raw', 'interactions') }}

),

-- The costly string work, done once per value.
stripped as (

    select
        *,
        {{ normalize_id('user_id') }} as user_id_text,
        {{ normalize_id('item_id') }} as item_id_text,
        {{ py_strip('"timestamp"') }} as timestamp_text,
        lower({{ py_strip('event_type') }}) as event_type_text,
        {{ py_strip('quantity') }} as quantity_text,
        {{ py_strip('price') }} as price_text,
        {{ py_strip('session_id') }} as session_id_text,
        {{ py_strip('event_id') }} as event_id_text
    from source

)

select
    load_id,
    source_file,
    cast(source_row as bigint) as source_row,
    malformed_line,

    user_id as raw_user_id,
    item_id as raw_item_id,
    "timestamp" as raw_timestamp,
    event_type as raw_event_type,
    quantity as raw_quantity,
    price as raw_price,
    session_id as raw_session_id,
    event_id as raw_event_id,

    {{ null_if_token('user_id_text') }} as user_id,
    {{ null_if_token('item_id_text') }} as item_id,
    {{ parse_timestamp('timestamp_text') }} as occurred_at,
    {{ canonical_event_type(null_if_token('event_type_text')) }} as event_type,
    {{ parse_integer('quantity_text') }} as quantity,
    {{ parse_number('price_text') }} as unit_price,
    {{ null_if_token('session_id_text') }} as session_id,
    {{ null_if_token('event_id_text') }} as event_id
from stripped
