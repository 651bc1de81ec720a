{{ config(meta={'dagster': {'ref': {'name': 'reconciliation'}}}) }}
-- The quarantine holds exactly the rows reconciliation counts as rejected, per load.
with quarantined as (
    select load_id, count(*) as n_rows from {{ ref('quarantine') }} group by load_id
)
select reconciliation.load_id, reconciliation.rejected_rows, quarantined.n_rows
from {{ ref('reconciliation') }} as reconciliation
full outer join quarantined on reconciliation.load_id = quarantined.load_id
where coalesce(reconciliation.rejected_rows, -1) <> coalesce(quarantined.n_rows, 0)
