{{ config(materialized='view') }}
-- Every order line with the first failed row-level check, in priority order; NULL when the line passes.
-- Duplicates are not validated (they are accounted as duplicates). Cancellations and the sign of
-- quantity and price are decided later (int_order_lines__cancellations_matched, int_order_lines__classified).
select
    *,
    case
        when is_duplicate then null
        when malformed_line is not null then 'malformed_line'
        when stock_code is null then 'missing_item'
        when ordered_at is null then 'unparseable_timestamp'
        when {{ is_out_of_event_window('ordered_at') }} then 'timestamp_out_of_range'
        when quantity is null then 'unparseable_quantity'
        when unit_price is null then 'unparseable_price'
        when {{ is_non_product('stock_code') }} then 'non_product'
        when customer_id is null then 'missing_user'
    end as validation_reason
from {{ ref('int_order_lines__deduplicated') }}
