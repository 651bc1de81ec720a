{#- 'u_' + sha256(key + '|' + normalized id)[:16], byte for byte what orchestration.privacy.pseudonymize
    computes in Python: the id is stripped like str.strip() and a trailing ".0" removed ("17850.0" -> "17850").
    Pass the raw id text (normalising twice would strip "1.0.0" down to "1"). The key comes from the
    pseudonymization_key var, which Dagster passes on every build; the default is for development only. -#}
{% macro pseudonymize(raw_id) -%}
{%- set key = var('pseudonymization_key', 'recsys-dev-key') | string -%}
'u_' || left(sha256('{{ key | replace("'", "''") }}|' || regexp_replace({{ py_strip(raw_id) }}, '\.0+$', '')), 16)
{%- endmacro %}

{#- An anonymous visitor's key: 's_' + sha256(key + '|session:' + session id)[:16], what
    orchestration.privacy.pseudonymize_session computes in Python. The 's_' prefix keeps a session apart from every
    customer ('u_'), whatever ids the shop uses; pass the session id already trimmed (staging's session_id). -#}
{% macro pseudonymize_session(session_id) -%}
{%- set key = var('pseudonymization_key', 'recsys-dev-key') | string -%}
's_' || left(sha256('{{ key | replace("'", "''") }}|session:' || {{ session_id }}), 16)
{%- endmacro %}
