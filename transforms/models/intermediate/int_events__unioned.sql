-- The clean events from every source in one shape: kept order lines (purchases) and kept generic
-- interactions, with pseudonymised users. A generic event without a customer id belongs to its session: its user
-- is the pseudonymised session ('s_...', never a customer's 'u_...') and is_anonymous is true. The marts
-- fct_interactions, dim_items and dim_users read this.
with order_lines as (

    select * from {{ ref('int_order_lines__classified') }} where row_status = 'kept'

),

interactions as (

    select * from {{ ref('int_interactions__views_collapsed') }} where not is_collapsed

)

select
    md5(load_id || '|' || cast(source_row as varchar)) as interaction_id,
    cast(null as varchar) as event_id,
    {{ pseudonymize('raw_customer_id') }} as user_id,
    false as is_anonymous,
    stock_code as item_id,
    'purchase' as event_type,
    ordered_at as occurred_at,
    quantity,
    unit_price,
    invoice as basket_id,
    country,
    description,
    'order_lines' as source_table,
    load_id,
    source_row
from order_lines

union all

select
    md5(load_id || '|' || cast(source_row as varchar)) as interaction_id,
    event_id,
    case
        when user_id is null then {{ pseudonymize_session('session_id') }}
        else {{ pseudonymize('raw_user_id') }}
    end as user_id,
    user_id is null as is_anonymous,
    item_id,
    coalesce(event_type, 'purchase') as event_type,
    occurred_at,
    coalesce(quantity, 1) as quantity,
    unit_price,
    session_id as basket_id,
    cast(null as varchar) as country,
    cast(null as varchar) as description,
    'interactions' as source_table,
    load_id,
    source_row
from interactions
