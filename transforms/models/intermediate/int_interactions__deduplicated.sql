-- Every generic interaction, flagged when it repeats an earlier one with the same values across all loads;
-- the first copy by (load_seq, source_row) is the original. Unparsed values compare by their raw text.
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
        partition by
            interactions.user_id,
            interactions.item_id,
            interactions.occurred_at,
            case when interactions.occurred_at is null then interactions.raw_timestamp end,
            interactions.event_type,
            interactions.quantity,
            case when interactions.quantity is null then interactions.raw_quantity end,
            interactions.unit_price,
            case when interactions.unit_price is null then interactions.raw_price end,
            interactions.session_id,
            interactions.malformed_line
        order by loads.load_seq, interactions.source_row, interactions.load_id
        rows between unbounded preceding and current row
    )

)

select
    * exclude (copy_number),
    copy_number > 1 as is_duplicate
from ranked
