-- One row per ingest load (a file written into one raw table).
select
    load_id,
    source_kind,
    target_table,
    source_file,
    content_sha256,
    cast(row_count as bigint) as declared_rows,
    cast(loaded_at as timestamp) as loaded_at,
    cast(load_seq as bigint) as load_seq
from {{ source('raw', 'loads') }}
