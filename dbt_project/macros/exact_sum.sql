{#
  The sum of a double column, the same on every build. A sum of doubles depends on the
  order the rows arrive in, which a parallel aggregate does not fix: a rebuild of the same
  window would differ in the last bits. Summed as a fixed-point numeric (6 decimals), the
  sum is exact and order-free. Ingest keeps the values within the numeric's range
  (MAX_SESSION_SECONDS in churn_platform/events.py).
#}
{% macro exact_sum(value) -%}
    cast(sum(cast({{ value }} as {{ dbt.type_numeric() }})) as {{ double_type() }})
{%- endmacro %}
