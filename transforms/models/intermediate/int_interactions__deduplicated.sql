-- Every generic interaction, flagged when it repeats an earlier one across all loads; the first copy by
-- (load_seq, source_row) is the original. A row with an event id is a copy of an earlier row with the same id,
-- whatever its values (a retried post, the same event in two files; a correction needs a new id). A row without
-- one is a copy of an earlier row without one that has the same values. Unparsed values compare by their raw text.
{%- set value_columns = [
    'interactions.user_id',
    'interactions.item_id',
    'interactions.occurred_at',
    'case when interactions.occurred_at is null then interactions.raw_timestamp end',
    'interactions.event_type',
    'interactions.quantity',
    'case when interactions.quantity is null then interactions.raw_quantity end',
    'interactions.unit_price',
    'case when interactions.unit_price is null then interactions.raw_price end',
    'interactions.session_id',
    'interactions.malformed_line',
] %}
with interactions as (

    select * from {{ ref('stg_raw__interactions') }}

),

loads as (

    select load_id, load_seq from {{ ref('stg_raw__loads') }}

),

ranked as (

    select
        interactions.*,
        loads.load_seq,
        row_number() over copies as copy_number,
        first_value(interactions.load_id) over copies as original_load_id,
        first_value(interactions.source_row) over copies as original_source_row
    from interactions
    left join loads on interactions.load_id = loads.load_id
    window copies as (
        -- The event id alone where there is one (the values are then all NULL here), else the values.
        partition by
            interactions.event_id,
            {%- for column in value_columns %}
            case when interactions.event_id is null then {{ column }} end{{ "," if not loop.last }}
            {%- endfor %}
        order by loads.load_seq, interactions.source_row, interactions.load_id
        rows between unbounded preceding and current row
    )

)

select
    * exclude (copy_number),
    copy_number > 1 as is_duplicate
from ranked
