-- After deduplication no two order-line events share all their business values. The description is part of
-- the key: UCI Online Retail has legitimate pairs that differ only in it (invoice 575335 bills 300 x 23203
-- at 1.79 twice, once as "JUMBO BAG VINTAGE DOILY", once as "JUMBO BAG DOILEY PATTERNS").
-- Scoped to order lines: a generic source may legitimately log the same view twice.
select user_id, item_id, occurred_at, basket_id, quantity, unit_price, country, description, count(*) as n_events
from {{ ref('int_events__unioned') }}
where source_table = 'order_lines'
group by user_id, item_id, occurred_at, basket_id, quantity, unit_price, country, description
having count(*) > 1
