-- Every order line, flagged when it repeats an earlier line with the same business values.
-- Copies are found across all loads (a re-exported file repeats every row); the first copy by
-- (load_seq, source_row) is the original. Values compare after staging normalisation, and where a
-- value failed to parse its raw text is compared instead, so two different garbage values are never merged.
with lines as (

    select * from {{ ref('stg_raw__order_lines') }}

),

loads as (

    select load_id, load_seq from {{ ref('stg_raw__loads') }}

),

ranked as (

    select
        lines.*,
        loads.load_seq,
        row_number() over copies as copy_number,
        first_value(lines.load_id) over copies as original_load_id,
        first_value(lines.source_row) over copies as original_source_row
    from lines
    left join loads on lines.load_id = loads.load_id
    window copies as (
        partition by
            lines.invoice,
            lines.stock_code,
            lines.description,
            lines.quantity,
            case when lines.quantity is null then lines.raw_quantity end,
            lines.ordered_at,
            case when lines.ordered_at is null then lines.raw_invoice_date end,
            lines.unit_price,
            case when lines.unit_price is null then lines.raw_unit_price end,
            lines.customer_id,
            lines.country,
            lines.malformed_line
        order by loads.load_seq, lines.source_row, lines.load_id
        rows between unbounded preceding and current row
    )

)

select
    * exclude (copy_number),
    copy_number > 1 as is_duplicate
from ranked
