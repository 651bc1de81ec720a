-- Every rejected raw row with its reason and all of its raw text, so nothing is lost.
-- Duplicates are not here: reconciliation counts them per load.
with order_lines as (

    select * from {{ ref('int_order_lines__classified') }} where row_status = 'rejected'

),

interactions as (

    select * from {{ ref('int_interactions__classified') }} where row_status = 'rejected'

),

items as (

    select * from {{ ref('int_items__classified') }} where row_status = 'rejected'

),

unioned as (

    select
        load_id,
        'order_lines' as source_table,
        source_row,
        rejection_reason as reason,
        cast(json_object(
            'sheet', sheet,
            'invoice', raw_invoice,
            'stock_code', raw_stock_code,
            'description', raw_description,
            'quantity', raw_quantity,
            'invoice_date', raw_invoice_date,
            'unit_price', raw_unit_price,
            'customer_id', raw_customer_id,
            'country', raw_country,
            'malformed_line', malformed_line
        ) as varchar) as raw_values,
        source_file
    from order_lines

    union all

    select
        load_id,
        'interactions' as source_table,
        source_row,
        rejection_reason as reason,
        cast(json_object(
            'user_id', raw_user_id,
            'item_id', raw_item_id,
            'timestamp', raw_timestamp,
            'event_type', raw_event_type,
            'quantity', raw_quantity,
            'price', raw_price,
            'session_id', raw_session_id,
            'event_id', raw_event_id,
            'malformed_line', malformed_line
        ) as varchar) as raw_values,
        source_file
    from interactions

    union all

    select
        load_id,
        'items' as source_table,
        source_row,
        rejection_reason as reason,
        cast(json_object(
            'item_id', raw_item_id,
            'title', raw_title,
            'description', raw_description,
            'category', raw_category,
            'brand', raw_brand,
            'price', raw_price,
            'malformed_line', malformed_line
        ) as varchar) as raw_values,
        source_file
    from items

)

select
    md5(source_table || '|' || load_id || '|' || cast(source_row as varchar)) as quarantine_id,
    *
from unioned
