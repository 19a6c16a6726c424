{#
  The partition window of a run: the orchestrator passes it in the environment
  variable CHURN_DBT_WINDOW (a JSON object with the var names of dbt_project.yml);
  by hand, pass --vars. Every model filters on its window, on the first build and
  on reruns alike, and a rerun first deletes the window's rows, so a window is
  replaced whole and no other row is touched.
#}

{#
  CHURN_DBT_WINDOW is read only while dbt executes, never while it parses: what the
  parse reads is saved with it, so a window read there (as --vars are) would make every
  new partition re-parse the whole project (about 3 s a dbt call).
#}
{% macro window_values() %}
    {%- if execute -%}
        {{ return(fromjson(env_var('CHURN_DBT_WINDOW', '{}'))) }}
    {%- endif -%}
    {{ return({}) }}
{% endmacro %}


{% macro date_var(name) %}
    {%- set value = window_values().get(name, var(name)) | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be an ISO date (YYYY-MM-DD), got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat(value)) }}
{% endmacro %}


{% macro date_window(first_var, last_var) %}
    {%- set first_day = date_var(first_var) -%}
    {%- set last_day = date_var(last_var) -%}
    {%- if first_day > last_day -%}
        {{ exceptions.raise_compiler_error(first_var ~ " (" ~ first_day ~ ") is after " ~ last_var ~ " (" ~ last_day ~ ")") }}
    {%- endif -%}
    {{ return({'first_day': first_day, 'last_day': last_day}) }}
{% endmacro %}


{# A window of as-of dates: both ends must be Sundays (docs/contract.md §3). #}
{% macro sunday_window(first_var, last_var) %}
    {%- set window = date_window(first_var, last_var) -%}
    {%- for name, day in [(first_var, window.first_day), (last_var, window.last_day)] -%}
        {%- if day.isoweekday() != 7 -%}
            {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a Sunday (the as-of date of a weekly partition), got " ~ day ~ ", a " ~ day.strftime('%A')) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(window) }}
{% endmacro %}


{# As-of dates of user_features to build: [min_as_of, max_as_of]. #}
{% macro weekly_window() %}
    {{ return(sunday_window('min_as_of', 'max_as_of')) }}
{% endmacro %}


{# As-of dates of churn_labels to build: [label_min_as_of, label_max_as_of]. The orchestrator
   labels the as-of date four weeks before the partition's, whose label window has closed. #}
{% macro label_window() %}
    {{ return(sunday_window('label_min_as_of', 'label_max_as_of')) }}
{% endmacro %}


{# Every Sunday of a window (default: the features' weekly window), as dates. #}
{% macro as_of_dates_in_window(window=none) %}
    {%- set window = window or weekly_window() -%}
    {%- set weeks = ((window.last_day - window.first_day).days // 7) + 1 -%}
    {%- set as_of_dates = [] -%}
    {%- for week in range(weeks) -%}
        {%- do as_of_dates.append(window.first_day + modules.datetime.timedelta(days=7 * week)) -%}
    {%- endfor -%}
    {{ return(as_of_dates) }}
{% endmacro %}


{% macro date_literal(day) -%}
    cast('{{ day }}' as date)
{%- endmacro %}


{% macro in_window(column, window) -%}
    {{ column }} between {{ date_literal(window.first_day) }} and {{ date_literal(window.last_day) }}
{%- endmacro %}


{#
  Pre-hook of the partitioned models: delete the whole window, then the model
  appends the window's rows (incremental_strategy append). Deleting the window
  rather than matching keys also removes the rows of users who dropped out of
  it, and costs no key join. Pre-hooks run inside the model's transaction, so
  readers never see the window half replaced.
#}
{% macro delete_window_before_rerun(column, window) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_window(column, window) }}
    {%- endif -%}
{%- endmacro %}
