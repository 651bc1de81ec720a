-- Every raw generic interaction exactly once: kept, duplicate, or rejected with the first failed check.
-- An event without a customer but with a session id is an anonymous visitor's and is kept; only an event with
-- neither is missing_user.
-- Optional columns (quantity, price, event type) are only checked when present. When a catalogue exists
-- (any raw item row), an interaction must name an item of the current catalogue.
with interactions as (

    select * from {{ ref('int_interactions__deduplicated') }}

),

catalogue as (

    select item_id from {{ ref('int_items__classified') }} where row_status = 'kept'

),

catalogue_presence as (

    select count(*) > 0 as has_catalogue from {{ ref('stg_raw__items') }}

),

reasoned as (

    select
        interactions.*,
        case
            when interactions.is_duplicate then null
            when interactions.malformed_line is not null then 'malformed_line'
            when interactions.user_id is null and interactions.session_id is null then 'missing_user'
            when interactions.item_id is null then 'missing_item'
            when interactions.occurred_at is null then 'unparseable_timestamp'
            when {{ is_out_of_event_window('interactions.occurred_at') }} then 'timestamp_out_of_range'
            when interactions.quantity is null and {{ clean_token('interactions.raw_quantity') }} is not null
                then 'unparseable_quantity'
            when interactions.unit_price is null and {{ clean_token('interactions.raw_price') }} is not null
                then 'unparseable_price'
            when interactions.event_type not in {{ event_behaviours() }} then 'unknown_event_type'
            when interactions.quantity <= 0 then 'non_positive_quantity'
            when interactions.unit_price < 0 then 'non_positive_price'
            when catalogue_presence.has_catalogue and catalogue.item_id is null then 'unknown_item'
        end as rejection_reason
    from interactions
    cross join catalogue_presence
    left join catalogue on interactions.item_id = catalogue.item_id

)

select
    *,
    {{ row_status() }} as row_status
from reasoned
