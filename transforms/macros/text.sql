{#- Text cleaning shared by the staging models. Every macro takes a SQL expression and returns one.
    Staging computes the expensive ones once in a CTE and applies null_if_token() to the result. -#}

{#- The characters Python's str.isspace() accepts, so that py_strip() trims exactly what str.strip() trims
    (SQL trim() alone only trims spaces). -#}
{% macro py_whitespace_chars() -%}
{%- set code_points = [9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197,
                       8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288] -%}
({% for code_point in code_points %}chr({{ code_point }}){{ " || " if not loop.last }}{% endfor %})
{%- endmacro %}

{#- Trim exactly what Python's str.strip() trims. -#}
{% macro py_strip(expr) -%}
trim({{ expr }}, {{ py_whitespace_chars() }})
{%- endmacro %}

{#- Free text: control characters (C0, DEL, C1) and Unicode spaces become one space per run, then trimmed.
    Most texts need nothing; a match is much cheaper than a replace, so only the others are rewritten. -#}
{% macro collapse_whitespace(expr) -%}
{%- set unicode_spaces = '\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}' -%}
case
    when regexp_matches({{ expr }}, '[\x00-\x1f\x7f-\x{a0}{{ unicode_spaces }}]|  |^ | $')
        then trim(regexp_replace({{ expr }}, '[\x00-\x20\x7f-\x{a0}{{ unicode_spaces }}]+', ' ', 'g'))
    else {{ expr }}
end
{%- endmacro %}

{#- An identifier as the pseudonymisation normalises it: stripped, trailing ".0" dropped ("17850.0" -> "17850");
    spreadsheets and pandas write integer ids as floats. -#}
{% macro normalize_id(expr) -%}
regexp_replace({{ py_strip(expr) }}, '\.0+$', '')
{%- endmacro %}

{#- NULL for an empty text and for the texts exports write for an empty cell ('nan' from pandas astype(str),
    'None', 'NULL'), case-insensitively. -#}
{% macro null_if_token(expr) -%}
case when lower({{ expr }}) not in ('', 'nan', 'none', 'null') then {{ expr }} end
{%- endmacro %}

{#- A short code or label: stripped, NULL when blank or a null token. -#}
{% macro clean_token(expr) -%}
{{ null_if_token(py_strip(expr)) }}
{%- endmacro %}
