{#- Parsers for the raw text values. Each takes an already trimmed text expression and returns NULL
    when the text is not a value of the type, so callers can tell "missing" from "unparseable". -#}

{#- An integer; "6.0" is accepted (float renderings of integer cells), "6.5" is not.
    At most 9 digits, so every accepted value fits an INTEGER. -#}
{% macro parse_integer(expr) -%}
case when regexp_full_match({{ expr }}, '[+-]?[0-9]{1,9}(\.0*)?')
    then cast(regexp_replace({{ expr }}, '\.0*$', '') as integer) end
{%- endmacro %}

{#- A finite decimal number ("2.55", "-11062.06", "1e3"); "nan", "inf" and "2,55" are not numbers. -#}
{% macro parse_number(expr) -%}
case when regexp_full_match({{ expr }}, '[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?')
    and isfinite(cast({{ expr }} as double)) then cast({{ expr }} as double) end
{%- endmacro %}

{#- A point in time as a naive UTC TIMESTAMP. Accepted layouts:
    ISO "2010-12-01 08:26:00", with or without seconds, "T" separator, optional fraction, optional date only;
    ISO with an offset ("...Z", "...+01:00", "...+0100"), converted to UTC;
    US "12/1/2010 8:26" and "12/01/2010 08:26:00" (month first), optional date only;
    epoch seconds ("1291191960", fraction allowed) and epoch milliseconds (12 to 14 digits). -#}
{% macro parse_timestamp(expr) -%}
case
    when regexp_full_match({{ expr }}, '[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)')
        then try_cast({{ expr }} as timestamptz) at time zone 'UTC'
    when regexp_full_match({{ expr }}, '[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?')
        then try_cast({{ expr }} as timestamp)
    when regexp_full_match({{ expr }}, '[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?')
        then try_strptime({{ expr }}, ['%m/%d/%Y %H:%M:%S', '%m/%d/%Y %H:%M', '%m/%d/%Y'])
    when regexp_full_match({{ expr }}, '[0-9]{1,11}(\.[0-9]+)?')
        then make_timestamp(cast(round(cast({{ expr }} as double) * 1000000) as bigint))
    when regexp_full_match({{ expr }}, '[0-9]{12,14}')
        then make_timestamp(cast({{ expr }} as bigint) * 1000)
end
{%- endmacro %}
