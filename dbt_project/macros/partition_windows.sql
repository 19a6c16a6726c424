{#
  The partition window of a run comes from --vars (see dbt_project.yml).
  Every model filters on its window, on the first build and on reruns alike,
  and a rerun first deletes the window's rows, so a window is replaced whole
  and no other row is touched.
#}

{% macro date_var(name) %}
    {%- set value = var(name) | string -%}
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


{# Event dates of user_daily_activity to build: [min_date, max_date]. #}
{% macro daily_window() %}
    {{ return(date_window('min_date', 'max_date')) }}
{% endmacro %}


{# As-of dates of the weekly models to build: [min_as_of, max_as_of], both Sundays (DESIGN.md §3). #}
{% macro weekly_window() %}
    {%- set window = date_window('min_as_of', 'max_as_of') -%}
    {%- for name, day in [('min_as_of', window.first_day), ('max_as_of', window.last_day)] -%}
        {%- if day.isoweekday() != 7 -%}
            {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a Sunday (the as-of date of a weekly partition), got " ~ day ~ ", a " ~ day.strftime('%A')) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(window) }}
{% endmacro %}


{# Every Sunday of the weekly window, as dates. #}
{% macro as_of_dates_in_window() %}
    {%- set window = weekly_window() -%}
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
  Pre-hook of the partitioned models. delete+insert alone only replaces the
  keys the rerun produces again; deleting the whole window first also removes
  the rows of users who dropped out of it. Pre-hooks run inside the model's
  transaction, so readers never see the window half replaced.
#}
{% macro delete_window_before_rerun(column, window) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_window(column, window) }}
    {%- endif -%}
{%- endmacro %}
