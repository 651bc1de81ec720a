-- One row per item that has a clean event or a current catalogue row, with the text to embed.
-- Without a catalogue title, the title is the item's most frequent description among its kept order lines
-- (ties: alphabetically first), so "WHITE HANGING HEART T-LIGHT HOLDER" wins over a one-off variant.
with events as (

    select * from {{ ref('int_events__unioned') }}

),

catalogue as (

    select * from {{ ref('int_items__classified') }} where row_status = 'kept'

),

item_ids as (

    select item_id from events
    union
    select item_id from catalogue

),

description_counts as (

    select item_id, description, count(*) as n_lines
    from events
    where description is not null
    group by item_id, description

),

canonical_descriptions as (

    select
        item_id,
        count(*) as n_description_variants,
        arg_min(description, (-n_lines, description)) as canonical_description
    from description_counts
    group by item_id

),

event_stats as (

    select
        item_id,
        min(occurred_at) as first_seen_at,
        median(unit_price) filter (where unit_price > 0) as median_unit_price
    from events
    group by item_id

)

select
    item_ids.item_id,
    coalesce(catalogue.title, canonical_descriptions.canonical_description) as title,
    catalogue.description,
    catalogue.category,
    catalogue.brand,
    coalesce(case when catalogue.price >= 0 then catalogue.price end, event_stats.median_unit_price) as price,
    coalesce(canonical_descriptions.n_description_variants, 0) as n_description_variants,
    coalesce(catalogue.title, canonical_descriptions.canonical_description, catalogue.description) is not null
        as has_text,
    event_stats.first_seen_at
from item_ids
left join catalogue on item_ids.item_id = catalogue.item_id
left join canonical_descriptions on item_ids.item_id = canonical_descriptions.item_id
left join event_stats on item_ids.item_id = event_stats.item_id
