{{ config(materialized='ephemeral') }}

with as_of_date_list as (

    {% for as_of_date in as_of_dates_in_window() %}
    select {{ date_literal(as_of_date) }} as as_of_date
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

-- Whole UTC days, bounds included (docs/contract.md §3): features read
-- [lookback_start, as_of_date] at most, labels read (as_of_date, label_window_end].
select
    as_of_date,
    cast({{ dbt.dateadd('day', 1 - var('lookback_days'), 'as_of_date') }} as date) as lookback_start,
    cast({{ dbt.dateadd('day', 1 - var('payment_window_days'), 'as_of_date') }} as date) as payment_window_start,
    cast({{ dbt.dateadd('day', 1 - var('session_window_days'), 'as_of_date') }} as date) as session_window_start,
    cast({{ dbt.dateadd('day', var('label_window_days'), 'as_of_date') }} as date) as label_window_end
from as_of_date_list
