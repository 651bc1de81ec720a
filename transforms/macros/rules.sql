{#- Business rules used by the intermediate models, one definition each. -#}

{#- True when an event time lies outside the plausible window: before var min_event_at, or more than
    var future_tolerance_days after now (UTC). -#}
{% macro is_out_of_event_window(ts) -%}
({{ ts }} < cast('{{ var("min_event_at") }}' as timestamp)
    or {{ ts }} > (now() at time zone 'UTC') + to_days({{ var("future_tolerance_days") | int }}))
{%- endmacro %}

{#- Postage, fees, discounts, manual adjustments, samples, gift vouchers: stock codes that are not products.
    Products always carry a digit (85123A, 22423); the fee codes carry none (POST, DOT, M, D, CRUK, BANK CHARGES,
    AMAZONFEE, PADS ...), except the few listed in var non_product_stock_codes and the gift_* vouchers. -#}
{% macro is_non_product(stock_code) -%}
(not regexp_matches({{ stock_code }}, '[0-9]')
    or upper({{ stock_code }}) like 'GIFT\_%' escape '\'
    or upper({{ stock_code }}) in (
        {%- for code in var('non_product_stock_codes') %}'{{ code | upper }}'{{ ", " if not loop.last }}{% endfor -%}
    ))
{%- endmacro %}

{#- An Online Retail cancellation line: its invoice number starts with "C". -#}
{% macro is_cancellation_invoice(invoice) -%}
coalesce(upper({{ invoice }}) like 'C%', false)
{%- endmacro %}

{#- Where a classified raw row ends up: exactly one of duplicate, rejected or kept (the reconciliation's three
    buckets), so every raw row is counted once. -#}
{% macro row_status(is_duplicate='is_duplicate', rejection_reason='rejection_reason') -%}
case
        when {{ is_duplicate }} then 'duplicate'
        when {{ rejection_reason }} is not null then 'rejected'
        else 'kept'
    end
{%- endmacro %}

{#- The behaviour a raw event name stands for: var event_types maps each behaviour (view, cart, favourite,
    purchase) to the names shops use for it, and var extra_event_types (a shop's own names, passed by the
    pipeline) maps more names to those behaviours. Names are compared trimmed and lower-cased; a name neither
    maps is returned as it is, so the classification can reject it as unknown_event_type. -#}
{% macro canonical_event_type(name) -%}
{%- set names = {} -%}
{%- for behaviour, aliases in var('event_types').items() -%}
    {%- for alias in aliases %}{% do names.update({alias | lower: behaviour}) %}{% endfor -%}
{%- endfor -%}
{%- for alias, behaviour in var('extra_event_types', {}).items() %}{% do names.update({alias | lower: behaviour}) %}{% endfor -%}
case {{ name }}
    {%- for alias, behaviour in names.items() | sort %}
        when '{{ alias | replace("'", "''") }}' then '{{ behaviour }}'
    {%- endfor %}
        else {{ name }}
    end
{%- endmacro %}

{#- The behaviours var event_types defines, as a SQL list. -#}
{% macro event_behaviours() -%}
({%- for behaviour in var('event_types') %}'{{ behaviour }}'{{ ", " if not loop.last }}{% endfor -%})
{%- endmacro %}
