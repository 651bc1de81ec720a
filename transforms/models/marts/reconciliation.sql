-- One row per load: every raw row is kept, a duplicate, or rejected, and the raw table holds as many rows
-- as ingest declared. raw_rows is recounted from the raw table, not taken from raw.loads. Of the kept rows,
-- collapsed_rows were merged into an earlier view; the rest are rows of fct_interactions.
with loads as (

    select * from {{ ref('stg_raw__loads') }}

),

raw_counts as (

    select load_id, 'order_lines' as target_table, count(*) as raw_rows
    from {{ ref('stg_raw__order_lines') }} group by load_id
    union all
    select load_id, 'interactions' as target_table, count(*) as raw_rows
    from {{ ref('stg_raw__interactions') }} group by load_id
    union all
    select load_id, 'items' as target_table, count(*) as raw_rows
    from {{ ref('stg_raw__items') }} group by load_id

),

classified as (

    select load_id, 'order_lines' as target_table, row_status, rejection_reason
    from {{ ref('int_order_lines__classified') }}
    union all
    select load_id, 'interactions' as target_table, row_status, rejection_reason
    from {{ ref('int_interactions__classified') }}
    union all
    select load_id, 'items' as target_table, row_status, rejection_reason
    from {{ ref('int_items__classified') }}

),

status_counts as (

    select
        load_id,
        target_table,
        count(*) filter (where row_status = 'kept') as kept_rows,
        count(*) filter (where row_status = 'duplicate') as duplicate_rows,
        count(*) filter (where row_status = 'rejected') as rejected_rows
    from classified
    group by load_id, target_table

),

-- Kept views merged into an earlier view of the same run (int_interactions__views_collapsed): kept, and counted
-- in that view's quantity, but not a row of fct_interactions.
collapsed_counts as (

    select load_id, 'interactions' as target_table, count(*) as collapsed_rows
    from {{ ref('int_interactions__views_collapsed') }}
    where is_collapsed
    group by load_id

),

reason_counts as (

    select load_id, target_table, rejection_reason, count(*) as n_rows
    from classified
    where row_status = 'rejected'
    group by load_id, target_table, rejection_reason

),

reasons_by_load as (

    select
        load_id,
        target_table,
        '{' || string_agg(to_json(rejection_reason)::varchar || ':' || n_rows, ',' order by rejection_reason) || '}'
            as rejected_by_reason
    from reason_counts
    group by load_id, target_table

),

joined as (

    select
        loads.load_id,
        loads.load_seq,
        loads.source_kind,
        loads.source_file,
        loads.target_table,
        loads.declared_rows,
        coalesce(raw_counts.raw_rows, 0) as raw_rows,
        coalesce(status_counts.kept_rows, 0) as kept_rows,
        coalesce(status_counts.duplicate_rows, 0) as duplicate_rows,
        coalesce(status_counts.rejected_rows, 0) as rejected_rows,
        coalesce(collapsed_counts.collapsed_rows, 0) as collapsed_rows,
        coalesce(reasons_by_load.rejected_by_reason, '{}') as rejected_by_reason
    from loads
    left join raw_counts
        on loads.load_id = raw_counts.load_id and loads.target_table = raw_counts.target_table
    left join status_counts
        on loads.load_id = status_counts.load_id and loads.target_table = status_counts.target_table
    left join collapsed_counts
        on loads.load_id = collapsed_counts.load_id and loads.target_table = collapsed_counts.target_table
    left join reasons_by_load
        on loads.load_id = reasons_by_load.load_id and loads.target_table = reasons_by_load.target_table

)

select
    *,
    coalesce(
        raw_rows = kept_rows + duplicate_rows + rejected_rows and raw_rows = declared_rows,
        false
    ) as is_balanced
from joined
