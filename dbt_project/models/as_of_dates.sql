{{ config(materialized='ephemeral') }}

with as_of_date_list as (

    {% for as_of_date in as_of_dates_in_window() %}
    select {{ date_literal(as_of_date) }} as as_of_date
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

-- Whole UTC days, bounds included (DESIGN.md §3): features read
-- [lookback_start, as_of_date] at most, labels read (as_of_date, label_window_end].
select
    as_of_date,
    cast({{ dbt.dateadd('day', -89, 'as_of_date') }} as date) as lookback_start,        -- 90 days
    cast({{ dbt.dateadd('day', -29, 'as_of_date') }} as date) as payment_window_start,  -- 30 days
    cast({{ dbt.dateadd('day', -6, 'as_of_date') }} as date) as session_window_start,   -- 7 days
    cast({{ dbt.dateadd('day', 28, 'as_of_date') }} as date) as label_window_end        -- 28 days after A
from as_of_date_list
