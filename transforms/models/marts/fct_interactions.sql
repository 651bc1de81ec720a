-- One row per clean user-item event: what the recommenders learn from.
select
    interaction_id,
    event_id,
    user_id,
    is_anonymous,
    item_id,
    event_type,
    occurred_at,
    quantity,
    unit_price,
    basket_id,
    country,
    source_table,
    load_id,
    source_row
from {{ ref('int_events__unioned') }}
