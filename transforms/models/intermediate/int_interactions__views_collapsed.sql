-- Kept generic interactions with repeated views collapsed. A view of the same item by the same customer at most
-- var view_collapse_seconds after that customer's previous view of it joins the previous view's run (reloading a
-- page, a carousel scrolling past): the run's first view stands for the run, its quantity the number of views in
-- it. Every other event is its own run. run_rows counts the kept rows a row stands for, so the reconciliation can
-- account for the rows merged away (collapsed_rows). A visitor without a customer id is their session
-- (anonymous_session_id), so two anonymous sessions viewing one item never merge.
with kept as (

    select
        *,
        case when user_id is null then session_id end as anonymous_session_id
    from {{ ref('int_interactions__classified') }}
    where row_status = 'kept'

),

ordered as (

    select
        *,
        coalesce(event_type, 'purchase') = 'view'
            and coalesce(
                occurred_at - lag(occurred_at) over same_view <= to_seconds({{ var('view_collapse_seconds') | int }}),
                false
            ) as joins_previous
    from kept
    window same_view as (
        partition by user_id, anonymous_session_id, item_id, coalesce(event_type, 'purchase')
        order by occurred_at, load_seq, source_row, load_id
    )

),

runs as (

    select
        *,
        -- A run number per (customer, item, behaviour) that grows at every row that starts a run.
        sum(case when joins_previous then 0 else 1 end) over (
            partition by user_id, anonymous_session_id, item_id, coalesce(event_type, 'purchase')
            order by occurred_at, load_seq, source_row, load_id
            rows between unbounded preceding and current row
        ) as run_number
    from ordered

),

sized as (

    select
        *,
        count(*) over run as run_rows,
        cast(sum(coalesce(quantity, 1)) over run as integer) as run_quantity
    from runs
    window run as (partition by user_id, anonymous_session_id, item_id, coalesce(event_type, 'purchase'), run_number)

)

select
    * exclude (quantity, run_quantity, joins_previous, run_number, anonymous_session_id),
    case when run_rows > 1 then run_quantity else quantity end as quantity,
    joins_previous as is_collapsed
from sized
