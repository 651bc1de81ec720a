-- Every catalogue row, flagged when it repeats an earlier row with the same values across all loads
-- (a re-sent catalogue); the first copy by (load_seq, source_row) is the original.
with items as (

    select * from {{ ref('stg_raw__items') }}

),

loads as (

    select load_id, load_seq from {{ ref('stg_raw__loads') }}

),

ranked as (

    select
        items.*,
        loads.load_seq,
        row_number() over copies as copy_number,
        first_value(items.load_id) over copies as original_load_id,
        first_value(items.source_row) over copies as original_source_row
    from items
    left join loads on items.load_id = loads.load_id
    window copies as (
        partition by
            items.item_id,
            items.title,
            items.description,
            items.category,
            items.brand,
            items.price,
            case when items.price is null then items.raw_price end,
            items.malformed_line
        order by loads.load_seq, items.source_row, items.load_id
        rows between unbounded preceding and current row
    )

)

select
    * exclude (copy_number),
    copy_number > 1 as is_duplicate
from ranked
