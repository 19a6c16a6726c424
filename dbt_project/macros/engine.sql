{#
  What differs between the engines (CHURN_ENGINE), in one file: how a partitioned model
  replaces its window, and the name of a double. Models stay one copy each.
#}

{#
  Config of a model partitioned by `column` whose window comes from the macro named `window`.
  DuckDB deletes the window in a pre-hook and appends (one transaction: readers never see it
  half replaced). Spark overwrites exactly the partitions the run writes (insert_overwrite,
  dynamic): on plain parquet the swap of each partition is not atomic (README, "Spark").
#}
{% macro window_replacement(column, window) -%}
    {{ return(adapter.dispatch('window_replacement')(column, window)) }}
{%- endmacro %}


{% macro default__window_replacement(column, window) -%}
    {{ return({
        'incremental_strategy': 'append',
        'pre_hook': "{{ delete_window_before_rerun('" ~ column ~ "', " ~ window ~ "()) }}",
    }) }}
{%- endmacro %}


{% macro spark__window_replacement(column, window) -%}
    {{ return({
        'incremental_strategy': 'insert_overwrite',
        'partition_by': [column],
        'file_format': 'parquet',
    }) }}
{%- endmacro %}


{% macro double_type() -%}
    {{ return(adapter.dispatch('double_type')()) }}
{%- endmacro %}


{% macro default__double_type() -%}
    double precision
{%- endmacro %}


{% macro spark__double_type() -%}
    double
{%- endmacro %}
