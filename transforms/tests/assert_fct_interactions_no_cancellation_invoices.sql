-- A cancellation line never becomes an event. Returns order-line events whose invoice starts with "C".
select *
from {{ ref('fct_interactions') }}
where source_table = 'order_lines'
  and upper(basket_id) like 'C%'
