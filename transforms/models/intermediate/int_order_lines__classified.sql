-- Every raw order line exactly once, with its fate: kept (becomes an event), duplicate, or rejected with
-- one reason. Reasons apply in priority order: the row-level checks of int_order_lines__validated, then
-- cancellation logic (cancellation, unmatched_cancellation, reversed_by_cancellation), then the signs.
with validated as (

    select * from {{ ref('int_order_lines__validated') }}

),

cancellations as (

    select * from {{ ref('int_order_lines__cancellations_matched') }}

),

reasoned as (

    select
        validated.* exclude (validation_reason),
        cancellations.matched_load_id as cancellation_matched_load_id,
        cancellations.matched_source_row as cancellation_matched_source_row,
        case
            when validated.is_duplicate then null
            when validated.validation_reason is not null then validated.validation_reason
            when cancellations.cancellation_status is not null then cancellations.cancellation_status
            when validated.quantity <= 0 then 'non_positive_quantity'
            when validated.unit_price <= 0 then 'non_positive_price'
        end as rejection_reason
    from validated
    left join cancellations
        on validated.load_id = cancellations.load_id
        and validated.source_row = cancellations.source_row

)

select
    *,
    {{ row_status() }} as row_status
from reasoned
