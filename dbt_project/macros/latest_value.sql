{#
  The value of the row that sorts last by `order_by` (descending, in order), as an aggregate.
  DuckDB does it in the GROUP BY pass with arg_max; the portable default (Postgres and
  others) uses an ordered array_agg. A window + self-join did the same at ~3x the cost.
#}
{% macro latest_value(value, order_by) -%}
    {{ return(adapter.dispatch('latest_value')(value, order_by)) }}
{%- endmacro %}


{% macro default__latest_value(value, order_by) -%}
    (array_agg({{ value }} order by {% for column in order_by %}{{ column }} desc{% if not loop.last %}, {% endif %}{% endfor %}))[1]
{%- endmacro %}


{% macro duckdb__latest_value(value, order_by) -%}
    arg_max({{ value }}, struct_pack({% for column in order_by %}k{{ loop.index }} := {{ column }}{% if not loop.last %}, {% endif %}{% endfor %}))
{%- endmacro %}


{% macro spark__latest_value(value, order_by) -%}
    max_by({{ value }}, struct({{ order_by | join(', ') }}))
{%- endmacro %}
