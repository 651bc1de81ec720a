-- Pairs each Online Retail cancellation with the purchase it reverses.
--
-- Within one (customer, stock code, absolute quantity) the lines, ordered by (time, load_seq, source_row),
-- drive a stack: a purchase pushes, a cancellation pops the most recent unmatched earlier purchase (LIFO),
-- and a cancellation that finds the stack empty stays unmatched. Set-based, without recursion:
--   running_sum = prefix sum of +1 (purchase) / -1 (cancellation), unclamped;
--   depth_after = running_sum - least(0, running minimum of running_sum) is the stack depth with pops on an
--   empty stack ignored. A cancellation is matched iff the depth before it is > 0; it pops the purchase at
--   that level, which is the latest earlier purchase whose depth after its push equals that level (ASOF JOIN).
-- Output: one row per line that takes part in cancellation logic and is not left untouched:
-- the cancellations (matched or not) and the purchases they reverse.
with candidates as (

    select
        load_id,
        source_row,
        load_seq,
        customer_id,
        stock_code,
        quantity,
        ordered_at,
        {{ is_cancellation_invoice('invoice') }} as is_cancellation
    from {{ ref('int_order_lines__validated') }}
    where not is_duplicate
      and validation_reason is null

),

stack_events as (

    select
        *,
        abs(quantity) as matched_quantity,
        case when is_cancellation then -1 else 1 end as step
    from candidates
    where (is_cancellation and quantity < 0)
       or (not is_cancellation and quantity > 0)

),

walk as (

    select
        *,
        row_number() over stack as event_seq,
        sum(step) over stack as running_sum
    from stack_events
    window stack as (
        partition by customer_id, stock_code, matched_quantity
        order by ordered_at, load_seq, source_row, load_id
        rows between unbounded preceding and current row
    )

),

depths as (

    select
        *,
        running_sum - least(0, min(running_sum) over stack) as depth_after
    from walk
    window stack as (
        partition by customer_id, stock_code, matched_quantity
        order by event_seq
        rows between unbounded preceding and current row
    )

),

levels as (

    select
        *,
        coalesce(lag(depth_after) over (
            partition by customer_id, stock_code, matched_quantity order by event_seq
        ), 0) as depth_before
    from depths

),

pushes as (

    select * from levels where step = 1

),

pops as (

    select * from levels where step = -1 and depth_before > 0

),

matches as (

    select
        pops.load_id as cancellation_load_id,
        pops.source_row as cancellation_source_row,
        pushes.load_id as purchase_load_id,
        pushes.source_row as purchase_source_row
    from pops
    asof join pushes
        on pops.customer_id = pushes.customer_id
        and pops.stock_code = pushes.stock_code
        and pops.matched_quantity = pushes.matched_quantity
        and pops.depth_before = pushes.depth_after
        and pops.event_seq > pushes.event_seq

),

cancellations as (

    select
        candidates.load_id,
        candidates.source_row,
        case when matches.purchase_load_id is null then 'unmatched_cancellation' else 'cancellation' end
            as cancellation_status,
        matches.purchase_load_id as matched_load_id,
        matches.purchase_source_row as matched_source_row
    from candidates
    left join matches
        on candidates.load_id = matches.cancellation_load_id
        and candidates.source_row = matches.cancellation_source_row
    where candidates.is_cancellation

),

reversed_purchases as (

    select
        purchase_load_id as load_id,
        purchase_source_row as source_row,
        'reversed_by_cancellation' as cancellation_status,
        cancellation_load_id as matched_load_id,
        cancellation_source_row as matched_source_row
    from matches

)

select * from cancellations
union all
select * from reversed_purchases
