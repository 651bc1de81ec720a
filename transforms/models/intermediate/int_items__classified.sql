-- Every raw catalogue row exactly once: kept (the current version of its item), duplicate, or rejected.
-- The current version of an item is the content of its latest row by (load_seq, source_row), duplicates
-- included, so re-sending an older version makes it current again; the kept row is that content's first copy.
-- Items without any text are kept: downstream works without text.
with items as (

    select * from {{ ref('int_items__deduplicated') }}

),

latest_versions as (

    select
        item_id,
        original_load_id as current_load_id,
        original_source_row as current_source_row
    from items
    where malformed_line is null
      and item_id is not null
    qualify row_number() over (
        partition by item_id order by load_seq desc, source_row desc, load_id desc
    ) = 1

),

reasoned as (

    select
        items.*,
        case
            when items.is_duplicate then null
            when items.malformed_line is not null then 'malformed_line'
            when items.item_id is null then 'missing_item'
            when items.load_id is distinct from latest_versions.current_load_id
                or items.source_row is distinct from latest_versions.current_source_row
                then 'superseded_item_version'
        end as rejection_reason
    from items
    left join latest_versions on items.item_id = latest_versions.item_id

)

select
    *,
    {{ row_status() }} as row_status
from reasoned
