-- Every load balances: each raw row is kept, a duplicate or quarantined, and the raw table holds
-- exactly the rows ingest declared. Returns the loads that do not.
select *
from {{ ref('reconciliation') }}
where not is_balanced
